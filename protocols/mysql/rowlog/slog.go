package rowlog

import (
	"context"
	"log/slog"

	"github.com/rs/zerolog"
)

// quietLogger hands go-mysql's slog output to zerolog at debug level:
// the capture logs what matters (connects, losses, resumes) itself, and
// go-mysql would otherwise report every reconnect as an error.
func quietLogger(l zerolog.Logger) *slog.Logger {
	return slog.New(zerologHandler{l: l.With().Str("lib", "go-mysql").Logger()})
}

type zerologHandler struct {
	l     zerolog.Logger
	attrs []slog.Attr
}

func (h zerologHandler) Enabled(context.Context, slog.Level) bool {
	return h.l.GetLevel() <= zerolog.DebugLevel
}

func (h zerologHandler) Handle(_ context.Context, r slog.Record) error {
	ev := h.l.Debug()
	for _, a := range h.attrs {
		ev = ev.Str(a.Key, a.Value.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		ev = ev.Str(a.Key, a.Value.String())
		return true
	})
	ev.Msg(r.Message)
	return nil
}

func (h zerologHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)
	return h
}

func (h zerologHandler) WithGroup(string) slog.Handler { return h }
