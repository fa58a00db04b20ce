package transcode

import (
	"strconv"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// Args returns ffmpeg's arguments, without the program name, for encoding
// outs (from l.Plan) in one process: it reads format ("matroska" for
// WebM/Matroska, "mp4" for fragmented MP4, "" to probe) from stdin (pipe:0)
// and writes one MPEG-TS stream to stdout (pipe:1) holding one H.264 stream
// per output, in the order of outs, then the first audio stream of the input,
// if there is one, as AAC. Every video stream has a keyframe (IDR) exactly
// every second, at the same instants. Call l.Validate first and pass at
// least one output: Args does not check its input (with no outputs the
// command writes audio only). With l.FirstSegment set, the second keyframe
// comes that long after the first and the others a second apart from it.
// Args is pure: it runs nothing.
func Args(l Ladder, format string, outs []Output) []string {
	fps := l.frameRate()
	inOpts := ffmpeg.KwArgs{
		// Decide on the streams from the first few kilobytes instead of
		// waiting about 2 s for more of a live feed.
		"probesize":       "32768",
		"analyzeduration": "0",
	}
	if format != "" {
		inOpts["f"] = format
	}
	in := ffmpeg.Input("pipe:0", inOpts)

	// One fps filter turns the browser's variable frame timing into a fixed
	// rate before the split, so that every rendition gets the same frames
	// at the same timestamps and forced keyframes line up.
	split := in.Get("v:0").Filter("fps", ffmpeg.Args{strconv.Itoa(fps)}).Split()
	streams := make([]*ffmpeg.Stream, 0, len(outs)+1)

	outOpts := ffmpeg.KwArgs{
		"format":  "mpegts",
		"c:v":     "libx264",
		"preset":  l.preset(),
		"tune":    "zerolatency",
		"pix_fmt": "yuv420p",
		"bf":      "0",
		// A keyframe at every whole second of output time, none in
		// between (no scene cuts), and a GOP ceiling of two seconds.
		"force_key_frames": keyframes(l.FirstSegment),
		"forced-idr":       "1",
		"sc_threshold":     "0",
		"g":                strconv.Itoa(2 * fps),

		"c:a": "aac",
		"b:a": kbit(l.AudioBitrate),
		"ar":  "48000",
		"ac":  "2",
		"af":  "aresample=async=1000",
		// Hand each packet to the reader at once.
		"muxdelay":      "0",
		"muxpreload":    "0",
		"flush_packets": "1",
	}
	for i, o := range outs {
		streams = append(streams, split.Get(strconv.Itoa(i)).
			Filter("scale", ffmpeg.Args{strconv.Itoa(o.Width), strconv.Itoa(o.Height)}).
			Filter("setsar", ffmpeg.Args{"1"}))
		n := strconv.Itoa(i)
		outOpts["b:v:"+n] = kbit(o.VideoBitrate)
		outOpts["maxrate:v:"+n] = kbit(o.MaxRate)
		outOpts["bufsize:v:"+n] = kbit(o.BufSize)
		profile := "high"
		if min(o.Width, o.Height) < 720 {
			profile = "main"
		}
		outOpts["profile:v:"+n] = profile
		if lv := level(o.Width, o.Height, fps, o.MaxRate, profile == "high"); lv != "" {
			outOpts["level:v:"+n] = lv
		}
	}
	// The "?" makes the audio optional: a camera-only source has none.
	streams = append(streams, in.Get("a:0?"))
	cmd := ffmpeg.Output(streams, "pipe:1", outOpts).
		GlobalArgs("-hide_banner", "-nostats", "-loglevel", "warning")
	return cmd.GetArgs()
}

// keyframes is the force_key_frames expression: keyframes at 0 and then
// every second from first (0 or 1 s: every whole second).
func keyframes(first time.Duration) string {
	if first <= 0 || first >= time.Second {
		return "expr:gte(t,n_forced*1)"
	}
	// n_forced = 0: the first frame (t >= first - 1 < 0); then first,
	// first + 1, first + 2 ...
	return "expr:gte(t,n_forced-1+" + strconv.FormatFloat(first.Seconds(), 'f', -1, 64) + ")"
}

// kbit formats bits per second as ffmpeg's "k" (1000) units when exact.
func kbit(bps int) string {
	if bps%1000 == 0 {
		return strconv.Itoa(bps/1000) + "k"
	}
	return strconv.Itoa(bps)
}

// level returns the lowest H.264 level, 3.0 or above, that allows a w x h
// picture at fps frames per second and maxRate bits per second, or "" if
// none does (x264 then picks one itself).
func level(w, h, fps, maxRate int, high bool) string {
	levels := [...]struct {
		name      string
		maxMBPS   int // macroblocks per second
		maxFS     int // macroblocks per frame
		maxBRkbit int // baseline/main; high allows 1.25 times this
	}{
		{"3.0", 40500, 1620, 10000},
		{"3.1", 108000, 3600, 14000},
		{"3.2", 216000, 5120, 20000},
		{"4.0", 245760, 8192, 20000},
		{"4.1", 245760, 8192, 50000},
		{"4.2", 522240, 8704, 50000},
		{"5.0", 589824, 22080, 135000},
		{"5.1", 983040, 36864, 240000},
		{"5.2", 2073600, 36864, 240000},
	}
	mbW, mbH := (w+15)/16, (h+15)/16
	fs := mbW * mbH
	for _, lv := range levels {
		br := lv.maxBRkbit * 1000
		if high {
			br = br * 5 / 4
		}
		side := maxSide(lv.maxFS)
		if fs <= lv.maxFS && fs*fps <= lv.maxMBPS && maxRate <= br && mbW <= side && mbH <= side {
			return lv.name
		}
	}
	return ""
}

// maxSide is the largest picture side in macroblocks for a level with maxFS
// macroblocks per frame: sqrt(8 * maxFS).
func maxSide(maxFS int) int {
	s := 0
	for (s+1)*(s+1) <= 8*maxFS {
		s++
	}
	return s
}
