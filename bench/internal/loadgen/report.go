package loadgen

import (
	"encoding/json"
	"fmt"
	"os"
)

// WriteJSON writes v to path as indented JSON with a final newline: the
// tools' -json reports.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
