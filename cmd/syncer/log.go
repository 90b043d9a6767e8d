package main

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"

	"github.com/syncerhq/syncer/sync/provider"
)

// newLogger is the one logging setup: tint on a terminal (colour unless
// NO_COLOR is set); plain
// key=value without timestamps under journald (it stamps lines itself); JSON
// on request. Secrets are redacted by type (provider.Secret is a
// slog.LogValuer) and, as a backstop, by key name and by value.
func newLogger(w io.Writer, level, format string, secrets []string) *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	underJournald := os.Getenv("JOURNAL_STREAM") != ""
	replace := redactAttr(secrets, underJournald)
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: replace}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts))
	case "text":
		return slog.New(slog.NewTextHandler(w, opts))
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) && !underJournald {
		// NO_COLOR (https://no-color.org): any non-empty value turns colour off.
		noColor := os.Getenv("NO_COLOR") != ""
		return slog.New(tint.NewHandler(w, &tint.Options{Level: lvl, ReplaceAttr: replace, TimeFormat: "15:04:05", NoColor: noColor}))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// secretKeys are attribute names whose values are never logged, whatever
// their type.
var secretKeys = map[string]bool{
	"password": true, "secret": true, "client_secret": true, "token": true,
	"access_token": true, "refresh_token": true, "authorization": true, "code": true,
	"code_verifier": true, "key": true,
}

func redactAttr(secrets []string, dropTime bool) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if dropTime && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if secretKeys[strings.ToLower(a.Key)] {
			return slog.String(a.Key, provider.Redacted)
		}
		if len(secrets) == 0 {
			return a
		}
		switch a.Value.Kind() {
		case slog.KindString:
			s := a.Value.String()
			if clean := provider.ScrubText(s, secrets...); clean != s {
				return slog.String(a.Key, clean)
			}
		case slog.KindAny:
			// An error logged as it is ("error", err) is text too.
			if err, ok := a.Value.Any().(error); ok && err != nil {
				s := err.Error()
				if clean := provider.ScrubText(s, secrets...); clean != s {
					return slog.String(a.Key, clean)
				}
			}
		}
		return a
	}
}
