package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/provider"
)

// The lower layers say what went wrong; the command adds what to do, in
// its own words. These are the remedies the lower layers used to word.
func TestHintsNameTheCommandsAndVariables(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&provider.Error{Provider: "estateguru", Op: "refresh", Kind: provider.KindReauth, Code: "invalid_grant"}, "run `syncer connect` for this connection again"},
		{fmt.Errorf("estateguru: userInvestments: %w", provider.ErrNoAnswer), "no answer before the deadline (SYNCER_HTTP_TIMEOUT)"},
		{&sync.NotConfiguredError{Provider: "everreal"}, "everreal: not configured (set SYNCER_EVERREAL_CLIENT_ID and SYNCER_EVERREAL_CLIENT_SECRET)"},
		{fmt.Errorf("estateguru: %w for this connection", store.ErrNoToken), "run `syncer connect` or `syncer import` for it"},
		{fmt.Errorf("saving the refreshed token: disk full (%w)", sync.ErrTokenKept), "the connection may need `syncer connect` again"},
		{fmt.Errorf("%w: gave up", store.ErrLockTimeout), "SYNCER_LOCK_TIMEOUT"},
		{fmt.Errorf("%w %q", sync.ErrNoConnection, "x"), "see `syncer status`"},
		{fmt.Errorf("store: x %w", store.ErrNoDatabase), "SYNCER_DATA_DIR"},
		{fmt.Errorf("store: no key%w", store.ErrNoTokenKey), "SYNCER_TOKEN_KEY_FILE"},
		{&store.FileError{Op: "open", Path: "/d/tokens.db", Problem: store.ProblemNotWritable, Err: errors.New("readonly")}, "(SYNCER_DATA_DIR)"},
		{&store.FileError{Op: "open", Path: "/d/tokens.db", Problem: store.ProblemDamaged, Err: errors.New("not a database")}, "(syncer connect)"},
		{&sync.BaseURLError{Connection: store.Connection{Name: "eg", Provider: "estateguru"}, Problem: sync.BaseURLMoved, Err: errors.New("moved")},
			"refusing to sync: moved; nothing was sent (set it back, or if the provider really moved, re-connect: syncer connect estateguru -name eg -url URL (or syncer import))"},
		{&sync.BaseURLError{Connection: store.Connection{Name: "eg", Provider: "estateguru"}, Problem: sync.BaseURLUnbound, Err: errors.New("unbound")},
			"re-connect: syncer connect estateguru -name eg (or syncer import)"},
		{fmt.Errorf("store: data directory /tmp/x: %w", store.ErrUnsafeParent), "(SYNCER_DATA_DIR)"},
	} {
		if got := withHint(tc.err).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("withHint(%q) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
	// A hint is added once, and only where there is one.
	err := withHint(withHint(provider.ErrNoAnswer))
	if got := strings.Count(err.Error(), "SYNCER_HTTP_TIMEOUT"); got != 1 {
		t.Fatalf("%q: the hint %d times, want once", err, got)
	}
	if plain := errors.New("plain"); withHint(plain) != plain {
		t.Fatalf("an error without a remedy was changed")
	}
	if !errors.Is(withHint(store.ErrNoToken), store.ErrNoToken) {
		t.Fatalf("the hint hides the error")
	}
}

// The PostgreSQL store says which problem it met; the command names the
// variable and the fix, and a configuration problem exits 2.
func TestPostgresProblemsGetTheirRemedies(t *testing.T) {
	for p := pgstore.BadURL; p <= pgstore.KeyChanged; p++ {
		if _, hint := postgresHint(p); hint == "" {
			t.Errorf("problem %d has no remedy", p)
		}
	}
	err := postgresConfigError(&pgstore.Error{Msg: "database URL: cannot parse", Problem: pgstore.BadURL})
	if got := err.Error(); !errors.Is(err, errConfig) || !strings.HasPrefix(got, "configuration: SYNCER_DATABASE_URL: database URL: cannot parse (try postgres://") {
		t.Errorf("bad URL = %q, want a configuration error naming SYNCER_DATABASE_URL and the form", got)
	}
	err = withHint(&pgstore.Error{Op: "save token", Msg: "permission denied for table token", Problem: pgstore.NoPrivilege})
	if got := err.Error(); errors.Is(err, errConfig) || !strings.Contains(got, "see docs/postgres.md for the grants") {
		t.Errorf("no privilege = %q, want the grants named, not a configuration error", got)
	}
}
