package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
)

// connectionStatus is one line of `syncer status`, and its -json form
// (stable: scripts read it).
type connectionStatus struct {
	Name             string   `json:"name"`
	Provider         string   `json:"provider"`
	BaseURL          string   `json:"base_url"`
	State            string   `json:"state"`
	AccessExpiresAt  *string  `json:"access_expires_at"`
	RefreshExpiresAt *string  `json:"refresh_expires_at"`
	LastSuccessAt    *string  `json:"last_success_at"`
	LastError        string   `json:"last_error,omitempty"`
	NeedsAttention   bool     `json:"needs_attention"`
	Warnings         []string `json:"warnings,omitempty"`
	// StateSince is when the state last changed (null: not known).
	StateSince *string `json:"state_since"`
	// Fix is the command that brings the connection back, when it needs
	// re-login or its refresh token dies soon.
	Fix string `json:"fix,omitempty"`
}

func setupStatus(fs *flag.FlagSet) func(e env, args []string) error {
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	return func(e env, args []string) error { return status(e, args, *asJSON) }
}

func status(e env, args []string, asJSON bool) error {
	if len(args) > 0 {
		return usagef("status takes no arguments")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	// Read-only, snapshots.db alone (with PostgreSQL, a read-only session
	// that needs only the reporting grants): a monitoring user in the reporting
	// group can run it; it never creates, migrates or writes anything,
	// and never opens tokens.db.
	conns, err := a.readConnections(e.ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	out := make([]connectionStatus, 0, len(conns))
	attention := 0
	for _, c := range conns {
		st := statusOf(c, now, a.cfg)
		if st.NeedsAttention {
			attention++
		}
		out = append(out, st)
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printStatusTable(e, out)
	}
	if attention > 0 {
		return attentionError{fmt.Sprintf("%d of %d connections need attention", attention, len(out))}
	}
	return nil
}

func statusOf(c store.Connection, now time.Time, cfg *Config) connectionStatus {
	st := connectionStatus{
		Name: c.Name, Provider: c.Provider, BaseURL: c.BaseURL, State: c.State, LastError: c.LastError,
		AccessExpiresAt:  timePtr(c.AccessExpiresAt),
		RefreshExpiresAt: timePtr(c.RefreshExpiresAt),
		LastSuccessAt:    timePtr(c.LastSuccessAt),
		StateSince:       timePtr(c.StateSince),
	}
	warn := func(format string, args ...any) {
		st.Warnings = append(st.Warnings, fmt.Sprintf(format, args...))
		st.NeedsAttention = true
	}
	switch c.State {
	case store.StateReauthRequired:
		st.Fix = reconnectCommand(c)
		since := ""
		if !c.StateSince.IsZero() {
			since = " (since " + c.StateSince.Format(time.RFC3339) + ")"
		}
		warn("the provider refused the stored login%s: run `%s`", since, st.Fix)
	case store.StateDisconnected:
		return st // deliberate: nothing to do
	}
	if c.State == store.StateActive && c.LastError != "" {
		warn("the last sync failed (see last_error)")
	}
	if !c.RefreshExpiresAt.IsZero() {
		left := c.RefreshExpiresAt.Sub(now)
		switch {
		case left <= 0:
			st.Fix = reconnectCommand(c)
			warn("the refresh token expired at %s: re-connect", c.RefreshExpiresAt.Format(time.RFC3339))
		case left <= cfg.RefreshWarn:
			st.Fix = reconnectCommand(c)
			warn("the refresh token dies in %s (at %s): re-connect before then", humanDuration(left), c.RefreshExpiresAt.Format(time.RFC3339))
		}
	}
	if c.Provider != everreal.Name && c.Provider != estateguru.Name {
		warn("unknown provider %q", c.Provider)
	}
	return st
}

func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func humanDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}

func printStatusTable(e env, rows []connectionStatus) {
	if len(rows) == 0 {
		fmt.Fprintln(e.stdout, "No connections yet. Add one with `syncer connect everreal ...` or `syncer connect estateguru ...`.")
		return
	}
	// Cut to the terminal's width like query's tables; piped, whole.
	tw := newTableWriter(e.stdout, false)
	tw.header([]string{"NAME", "PROVIDER", "STATE", "LAST SUCCESS", "ACCESS EXPIRES", "REFRESH EXPIRES", "LAST ERROR"})
	dash := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	for _, r := range rows {
		lastErr := r.LastError
		if len(lastErr) > 80 {
			lastErr = lastErr[:77] + "..."
		}
		if lastErr == "" {
			lastErr = "-"
		}
		tw.line([]string{r.Name, r.Provider, r.State, dash(r.LastSuccessAt),
			dash(r.AccessExpiresAt), dash(r.RefreshExpiresAt), lastErr})
	}
	tw.end()
	for _, r := range rows {
		for _, w := range r.Warnings {
			fmt.Fprintf(e.stdout, "warning: %s: %s\n", r.Name, w)
		}
	}
	for _, r := range rows {
		if r.LastError != "" && len(r.LastError) > 80 {
			fmt.Fprintf(e.stdout, "%s last error: %s\n", r.Name, strings.TrimSpace(r.LastError))
		}
	}
}

func setupDisconnect(fs *flag.FlagSet) func(e env, args []string) error { return disconnect }

func disconnect(e env, args []string) error {
	if len(args) != 1 {
		return usagef("disconnect takes one connection name")
	}
	name := args[0]
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	c, err := a.store.ConnectionByName(e.ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return usagef("%v", withHint(err))
	}
	if err != nil {
		return err
	}
	unlock, err := a.store.LockConnection(e.ctx, c.ID, a.cfg.LockTimeout)
	if err != nil {
		return err
	}
	defer unlock()
	var revokeErr error
	tok, err := a.store.Token(e.ctx, c.ID)
	switch {
	case errors.Is(err, store.ErrNoToken):
		fmt.Fprintf(e.stdout, "%s: no tokens were stored\n", name)
	case err != nil:
		return err
	case c.Provider == everreal.Name && a.cfg.EverRealClientID != "" && checkProviderURL(tok.BaseURL) != nil:
		// Tokens go only to the URL tokens.db says issued them, never to
		// one taken from snapshots.db.
		revokeErr = fmt.Errorf("not revoked at EverReal: tokens.db does not hold a usable URL for these tokens")
	case c.Provider == everreal.Name && a.cfg.EverRealClientID != "":
		client := a.everReal(tok.BaseURL)
		revokeErr = client.Revoke(e.ctx, tok.Refresh)
		if revokeErr == nil && !tok.Access.IsZero() {
			revokeErr = client.Revoke(e.ctx, tok.Access)
		}
		if revokeErr == nil {
			fmt.Fprintf(e.stdout, "%s: tokens revoked at EverReal\n", name)
		}
	case c.Provider == everreal.Name:
		revokeErr = fmt.Errorf("not revoked at EverReal: SYNCER_EVERREAL_CLIENT_ID is not set")
	default:
		fmt.Fprintf(e.stdout, "%s: EstateGuru documents no revoke call; revoke syncer's access in your EstateGuru account if you want it gone there too\n", name)
	}
	// Local tokens go whatever the provider said: the person asked for it.
	if err := a.store.Disconnect(e.ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: disconnected; tokens deleted, snapshots kept\n", name)
	if revokeErr != nil {
		return attentionError{fmt.Sprintf("%s: the revoke failed (%v); the local tokens were deleted anyway", name, revokeErr)}
	}
	return nil
}
