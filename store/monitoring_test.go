package store

import (
	"context"
	"testing"
	"time"

	syncer "github.com/syncerhq/syncer"
)

// TestMigrateFromVersion2AddsMonitoringColumns: a version 2 database (no
// state_since, no run attention counts, no notify_state) gains them, keeps
// its rows, and a connection waiting for re-login gets a state_since.
func TestMigrateFromVersion2AddsMonitoringColumns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	id := connect(t, s, "acme", "estateguru")
	if err := s.SetState(ctx, id, StateReauthRequired, "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	// Back to what version 2 had.
	for _, q := range []string{
		"DROP VIEW connections", "DROP VIEW sync_runs", "DROP TABLE notify_state",
		"ALTER TABLE connection DROP COLUMN state_since",
		"ALTER TABLE sync_run DROP COLUMN connections_skipped",
		"ALTER TABLE sync_run DROP COLUMN connections_warned",
		"PRAGMA user_version = 2",
	} {
		if _, err := s.snapshots.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()

	// status reads a version 2 database as it is, without migrating it.
	conns, err := ReadConnections(ctx, dir)
	if err != nil || len(conns) != 1 || !conns[0].StateSince.IsZero() {
		t.Fatalf("ReadConnections on version 2 = %+v, %v", conns, err)
	}

	s = openStore(t, dir)
	if got, want := count(t, s.snapshots.DB, "PRAGMA user_version"), syncer.SchemaVersion; got != want {
		t.Fatalf("user_version = %d, want %d", got, want)
	}
	if got := count(t, s.snapshots.DB, "SELECT count(*) FROM connections WHERE name = 'acme' AND state_since IS NOT NULL"); got != 1 {
		t.Fatal("a connection waiting for re-login should have a state_since after the migration")
	}
	if got := count(t, s.snapshots.DB, "SELECT count(*) FROM sync_runs WHERE connections_skipped + connections_warned > 0"); got != 0 {
		t.Fatalf("runs with attention = %d, want 0", got)
	}
	if err := s.SetNotifyState(ctx, id, NotifyState{Condition: ConditionReauth}); err != nil {
		t.Fatal(err)
	}
}

func TestStateSinceChangesOnlyWithTheState(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	clock := time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return clock }
	id := connect(t, s, "acme", "everreal")
	clock = clock.Add(time.Hour)
	if err := s.SetState(ctx, id, StateReauthRequired, "refused"); err != nil {
		t.Fatal(err)
	}
	since := clock
	clock = clock.Add(time.Hour)
	if err := s.SetState(ctx, id, StateReauthRequired, "refused again"); err != nil {
		t.Fatal(err)
	}
	c, err := s.ConnectionByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !c.StateSince.Equal(since) {
		t.Fatalf("state_since = %v, want %v (when it entered reauth_required)", c.StateSince, since)
	}
	clock = clock.Add(time.Hour)
	connect(t, s, "acme", "everreal")
	if c, _ = s.ConnectionByName(ctx, "acme"); !c.StateSince.Equal(clock) || c.State != StateActive {
		t.Fatalf("after re-connect: state %s since %v, want active since %v", c.State, c.StateSince, clock)
	}
}

func TestConsecutiveFailuresCountSinceTheLastSuccess(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	id := connect(t, s, "acme", "everreal")
	now := time.Now()
	for _, status := range []string{ResultFailed, ResultOK, ResultFailed, ResultSkipped, ResultFailed} {
		run, err := s.StartRun(ctx, "once")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RecordResult(ctx, run, id, status, "", now, now); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ConsecutiveFailures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[id] != 2 {
		t.Fatalf("consecutive failures = %d, want 2", got[id])
	}
}
