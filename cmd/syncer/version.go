package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set by release builds:
//
//	go build -ldflags "-X main.version=1.2.3 -X main.commit=abc1234 -X main.date=2026-11-29T15:00:00Z" ./cmd/syncer
//
// A plain `go build` or `go install` leaves them empty and buildInfo falls
// back to what the Go toolchain recorded in the binary.
var (
	version string
	commit  string
	date    string
)

// versionInfo is what `syncer version` prints.
type versionInfo struct {
	Version, Commit, Date, GoVersion string
	Modified                         bool
}

func buildInfo() versionInfo {
	v := versionInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version // go install ...@v1.2.3
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.time":
				if v.Date == "" {
					v.Date = s.Value
				}
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	return v
}

func (v versionInfo) String() string {
	c := v.Commit
	if c == "" {
		c = "unknown"
	} else if len(c) > 12 {
		c = c[:12]
	}
	if v.Modified {
		c += "+modified"
	}
	d := v.Date
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("syncer %s (commit %s, built %s, %s)", v.Version, c, d, v.GoVersion)
}

func printVersion(w io.Writer) {
	fmt.Fprintln(w, buildInfo())
}
