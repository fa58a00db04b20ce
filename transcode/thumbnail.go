package transcode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// ThumbnailWidth is the width of a thumbnail in pixels; its height keeps
// the picture's shape.
const ThumbnailWidth = 320

// ThumbnailArgs returns ffmpeg's arguments, without the program name, for
// a JPEG of the first frame of the media on stdin (an init section and a
// segment, or any file ffmpeg can probe), ThumbnailWidth pixels wide,
// written to stdout. It is pure: it runs nothing.
func ThumbnailArgs() []string {
	return ffmpeg.Input("pipe:0").
		Output("pipe:1", ffmpeg.KwArgs{
			"frames:v": "1",
			"vf":       "scale=" + strconv.Itoa(ThumbnailWidth) + ":-2",
			"f":        "image2",
			"c:v":      "mjpeg",
			"q:v":      "5",
		}).
		GlobalArgs("-hide_banner", "-loglevel", "error").
		GetArgs()
}

// thumbnailTimeout bounds one thumbnail's ffmpeg.
const thumbnailTimeout = 5 * time.Second

// maxThumbnail bounds what is read of ffmpeg's output for one thumbnail.
const maxThumbnail = 4 << 20

// Thumbnail runs ffmpeg (path; "" for DefaultPath) on media with
// ThumbnailArgs and returns the JPEG. It gives up when ctx ends or after
// a few seconds.
func Thumbnail(ctx context.Context, path string, media []byte, log *slog.Logger) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, thumbnailTimeout)
	defer cancel()
	p := &Process{Path: path, Args: ThumbnailArgs(), Logger: log, StopTimeout: time.Second}
	stdin, stdout, err := p.Start()
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	defer p.Close()
	go func() {
		stdin.Write(media) // a failed write shows as ffmpeg's error
		stdin.Close()
	}()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	var jpeg bytes.Buffer
	_, rerr := io.Copy(&jpeg, io.LimitReader(stdout, maxThumbnail))
	if err := p.Wait(); err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("thumbnail: %w", ctx.Err())
	case rerr != nil:
		return nil, fmt.Errorf("thumbnail: read: %w", rerr)
	case jpeg.Len() == 0:
		return nil, errors.New("thumbnail: ffmpeg wrote no picture")
	}
	return jpeg.Bytes(), nil
}
