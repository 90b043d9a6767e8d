package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
)

// Event kinds.
const (
	EventReauthRequired  = "reauth_required"  // the provider refused the stored login
	EventFailing         = "failing"          // SYNCER_NOTIFY_AFTER failed runs in a row
	EventRecovered       = "recovered"        // synced again after failing or a re-login
	EventRefreshExpiring = "refresh_expiring" // the refresh token dies within SYNCER_REFRESH_WARN
	EventUnitFailed      = "unit_failed"      // a systemd unit failed (syncer notify UNIT)
)

// Event is one notification. Its JSON form is what SYNCER_NOTIFY_COMMAND
// reads on stdin (stable: documented in docs/monitoring.md).
type Event struct {
	Event            string `json:"event"`
	Connection       string `json:"connection,omitempty"`
	Provider         string `json:"provider,omitempty"`
	State            string `json:"state,omitempty"`
	Failures         int    `json:"failures,omitempty"`
	LastError        string `json:"last_error,omitempty"`
	RefreshExpiresAt string `json:"refresh_expires_at,omitempty"`
	Unit             string `json:"unit,omitempty"`
	Fix              string `json:"fix,omitempty"`
	Message          string `json:"message"`
	Host             string `json:"host"`
	Time             string `json:"time"`
}

// Title is a one-line summary.
func (e Event) Title() string {
	switch e.Event {
	case EventReauthRequired:
		return fmt.Sprintf("syncer: %s needs re-login", e.Connection)
	case EventFailing:
		return fmt.Sprintf("syncer: %s failed %d runs in a row", e.Connection, e.Failures)
	case EventRecovered:
		return fmt.Sprintf("syncer: %s recovered", e.Connection)
	case EventRefreshExpiring:
		return fmt.Sprintf("syncer: %s's login expires %s", e.Connection, e.RefreshExpiresAt)
	case EventUnitFailed:
		return fmt.Sprintf("syncer: %s failed", e.Unit)
	}
	return "syncer: " + e.Event
}

// Text is the message as the URL services get it.
func (e Event) Text() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.LastError != "" {
		fmt.Fprintf(&b, "\nLast error: %s", e.LastError)
	}
	if e.Fix != "" {
		fmt.Fprintf(&b, "\nFix: %s", e.Fix)
	}
	fmt.Fprintf(&b, "\n(%s, %s)", e.Host, e.Time)
	return b.String()
}

// Notifier delivers events to every SYNCER_NOTIFY_URLS service (through
// shoutrrr) and to SYNCER_NOTIFY_COMMAND.
type Notifier struct {
	urls    []string
	routers []*router.ServiceRouter
	command string
	timeout time.Duration
	log     *slog.Logger
}

// ParseNotifyURLs splits SYNCER_NOTIFY_URLS (separated by spaces, commas
// or new lines) and checks each one with shoutrrr. Errors name the entry by
// position and scheme, never its secret parts.
func ParseNotifyURLs(list string) ([]string, error) {
	fields := strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\t' })
	for i, raw := range fields {
		scheme := "?"
		if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
			scheme = u.Scheme
		}
		if _, err := router.New(nil, raw); err != nil {
			return nil, fmt.Errorf("entry %d (%s://...) is not a valid notification URL: %s", i+1, scheme, scrubURL(err.Error(), raw))
		}
	}
	return fields, nil
}

// NewNotifier makes a notifier; urls are checked already. timeout bounds
// each delivery.
func NewNotifier(urls []string, command string, timeout time.Duration, log *slog.Logger) (*Notifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{urls: urls, command: command, timeout: timeout, log: log}
	for _, raw := range urls {
		r, err := router.New(nil, raw)
		if err != nil {
			return nil, errors.New(scrubURL(err.Error(), raw))
		}
		r.Timeout = timeout
		n.routers = append(n.routers, r)
	}
	return n, nil
}

// Enabled reports whether anything is configured to deliver to.
func (n *Notifier) Enabled() bool { return n != nil && (len(n.routers) > 0 || n.command != "") }

// Send delivers ev everywhere. A failure is logged (its kind, never a
// secret part of a URL) and returned, so the caller retries at the next
// run; it never stops the others.
func (n *Notifier) Send(ctx context.Context, ev Event) error {
	var errs []error
	for i, r := range n.routers {
		params := types.Params{"title": ev.Title()}
		for _, err := range r.Send(ev.Text(), &params) {
			if err == nil {
				continue
			}
			msg := scrubURL(err.Error(), n.urls[i])
			n.log.Warn("notification not delivered; tried again at the next run", "event", ev.Event,
				"connection", ev.Connection, "service", RedactedURL(n.urls[i]), "error", msg)
			errs = append(errs, fmt.Errorf("%s: %s", RedactedURL(n.urls[i]), msg))
		}
	}
	if n.command != "" {
		if err := n.runCommand(ctx, ev); err != nil {
			n.log.Warn("notify command failed; tried again at the next run", "event", ev.Event,
				"connection", ev.Connection, "error", err.Error())
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runCommand runs SYNCER_NOTIFY_COMMAND with sh -c, the event as one JSON
// object on stdin, within the timeout (then the command's process group is
// killed).
func (n *Notifier) runCommand(ctx context.Context, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", n.command)
	cmd.Stdin = bytes.NewReader(append(body, '\n'))
	cmd.Env = append(commandEnviron(os.Environ()), "SYNCER_EVENT="+ev.Event, "SYNCER_EVENT_CONNECTION="+ev.Connection)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("notify command: killed after %s", n.timeout)
	}
	if err != nil {
		tail := strings.TrimSpace(out.String())
		if len(tail) > 200 {
			tail = tail[len(tail)-200:]
		}
		return fmt.Errorf("notify command: %v: %s", err, tail)
	}
	return nil
}

// commandEnviron is the notify command's environment: syncer's own, without
// what holds or leads to its secrets (every SYNCER_ variable, the client
// secrets and the database URL among them; PGPASSWORD; the systemd
// credentials directory). The command learns what happened from its stdin;
// whatever it prints on failure reaches the log.
func commandEnviron(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SYNCER_") || name == "PGPASSWORD" || name == "PGPASSFILE" || name == "CREDENTIALS_DIRECTORY" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// ConnState is one connection as the notifications judge it after a run.
type ConnState struct {
	Name, Provider, State string
	LastError             string
	Fix                   string
	Failures              int // failed attempts in a row
	RefreshExpiry         time.Time
	// RefreshWarn: the refresh token dies within the warning window.
	RefreshWarn bool
}

// Announced is what was last announced about a connection.
type Announced struct {
	Condition        string // ok, failing or reauth_required
	RefreshWarnedFor time.Time
}

// Change is one announcement due, and what is announced once it is
// delivered.
type Change struct {
	Event Event
	Next  Announced
}

// Changes lists what is due about a connection, given what was announced
// and after how many failures in a row a connection counts as failing.
// Each change is announced once: the caller stores Next once delivered.
func Changes(c ConnState, prev Announced, after int, now time.Time, host string) []Change {
	if prev.Condition == "" {
		prev.Condition = "ok"
	}
	cur := prev.Condition
	switch {
	case c.State == "reauth_required":
		cur = "reauth_required"
	case c.State != "active":
		return nil // disconnected: deliberate, nothing to say
	case c.Failures >= after:
		cur = "failing"
	case c.Failures == 0:
		cur = "ok"
	}
	// Otherwise (a few failures, fewer than after) what was announced
	// stands: not failing yet, or not recovered yet.
	base := Event{Connection: c.Name, Provider: c.Provider, State: c.State, Host: host,
		Time: now.UTC().Format(time.RFC3339), LastError: c.LastError}
	var out []Change
	if cur != prev.Condition {
		ev := base
		next := prev
		next.Condition = cur
		switch cur {
		case "reauth_required":
			ev.Event = EventReauthRequired
			ev.Fix = c.Fix
			ev.Message = fmt.Sprintf("%s (%s): the provider refused the stored login; syncer does not sync it until someone logs in again.", c.Name, c.Provider)
		case "failing":
			ev.Event = EventFailing
			ev.Failures = c.Failures
			ev.Fix = "see `syncer status` and the log (journalctl -u syncer)"
			ev.Message = fmt.Sprintf("%s (%s): the last %d sync attempts failed.", c.Name, c.Provider, c.Failures)
		case "ok":
			ev.Event = EventRecovered
			ev.LastError = ""
			ev.Message = fmt.Sprintf("%s (%s) synced again.", c.Name, c.Provider)
		}
		out = append(out, Change{Event: ev, Next: next})
	}
	if c.RefreshWarn && cur != "reauth_required" && !c.RefreshExpiry.IsZero() && !c.RefreshExpiry.Equal(prev.RefreshWarnedFor) {
		ev := base
		ev.Event = EventRefreshExpiring
		ev.LastError = ""
		ev.RefreshExpiresAt = c.RefreshExpiry.UTC().Format(time.RFC3339)
		ev.Fix = c.Fix
		ev.Message = fmt.Sprintf("%s (%s): its refresh token dies at %s; log in again before then.", c.Name, c.Provider, ev.RefreshExpiresAt)
		out = append(out, Change{Event: ev, Next: Announced{RefreshWarnedFor: c.RefreshExpiry}})
	}
	return out
}
