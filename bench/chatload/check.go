package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseRamp reads a connect rate such as "500/s" or "500".
func parseRamp(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || v <= 0 || v > 1e6 {
		return 0, fmt.Errorf("-ramp %q: want connections per second like 500/s", s)
	}
	return v, nil
}

// parseRates reads the -rate list: messages-per-second totals, comma
// separated, each run as a step; an empty list runs no step (joins and the
// idle memory only).
func parseRates(s string) ([]float64, error) {
	var rates []float64
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 1e6 {
			return nil, fmt.Errorf("-rate %q: want messages per second (0 to 1e6), comma separated", s)
		}
		rates = append(rates, v)
	}
	if len(rates) > maxSteps {
		return nil, fmt.Errorf("-rate %q: at most %d steps", s, maxSteps)
	}
	return rates, nil
}
