package sync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// recorder is an Observer that keeps what it hears.
type recorder struct {
	started []int64
	sums    []Summary
}

func (r *recorder) RunStarted(_ context.Context, runID int64, _ string) {
	r.started = append(r.started, runID)
}
func (r *recorder) RunFinished(_ context.Context, sum Summary) { r.sums = append(r.sums, sum) }

// TestRunShowsConnectionsNeedingAttention: a connection waiting for
// re-login is not attempted but recorded as skipped with the reason and
// the fix, logged at WARN, and makes the run partial; a refresh token
// dying within RefreshWarn does too; the observer hears of both.
func TestRunShowsConnectionsNeedingAttention(t *testing.T) {
	ctx := context.Background()
	st := newScheduleStore(t)
	tok := provider.Token{Access: "access-2", Refresh: "refresh-2", AccessExpiresAt: time.Now().Add(time.Hour)}
	refused, err := st.Connect(ctx, "acme", estateguru.Name, "https://estateguru.invalid", tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetState(ctx, refused.ID, store.StateReauthRequired, "estateguru: refresh: invalid_grant"); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	eg := &fakeEstateGuru{investments: func(context.Context) (*estateguru.Answer, error) { return sampleAnswer(), nil }}
	s := newTestSyncer(st, eg, &logs)
	// The command words the fix (cmd/syncer's reconnectCommand).
	s.Reconnect = func(c store.Connection) string { return "syncer connect " + c.Provider + " -name " + c.Name }
	obs := &recorder{}
	s.Observer = obs

	sum, err := s.Run(ctx, TriggerOnce, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != store.RunPartial || sum.OK != 1 || sum.Skipped != 1 || sum.NeedsReauth != 1 || !sum.NeedsAttention() {
		t.Fatalf("summary = %+v, want partial, 1 ok, 1 skipped", sum)
	}
	db, err := store.OpenReports(ctx, st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var status, why string
	var skipped int
	if err := db.QueryRow(`SELECT r.status, r.error, s.connections_skipped FROM sync_results r JOIN sync_runs s ON s.id = r.run_id
		WHERE r.connection = 'acme' AND r.run_id = ?`, sum.RunID).Scan(&status, &why, &skipped); err != nil {
		t.Fatal(err)
	}
	if status != store.ResultSkipped || !strings.Contains(why, "not attempted: needs re-login since ") ||
		!strings.Contains(why, "syncer connect estateguru -name acme") || skipped != 1 {
		t.Fatalf("acme's result: %s %q, run skipped %d", status, why, skipped)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"connection needs re-login; it is not synced until then\"") ||
		!strings.Contains(logs.String(), "connection=acme") {
		t.Fatalf("no WARN for acme:\n%s", logs.String())
	}
	if len(obs.started) != 1 || len(obs.sums) != 1 || obs.sums[0].RunID != sum.RunID || len(obs.sums[0].Attention) != 1 {
		t.Fatalf("observer heard %v and %+v", obs.started, obs.sums)
	}

	// A refresh token dying within the warning window.
	if err := st.SetState(ctx, refused.ID, store.StateDisconnected, ""); err != nil {
		t.Fatal(err)
	}
	soon := provider.Token{Access: "access-3", Refresh: "refresh-3", AccessExpiresAt: time.Now().Add(time.Hour),
		RefreshExpiresAt: time.Now().Add(48 * time.Hour)}
	if _, err := st.Connect(ctx, "dying", estateguru.Name, "https://estateguru.invalid", soon); err != nil {
		t.Fatal(err)
	}
	s.RefreshWarn = 14 * 24 * time.Hour
	sum, err = s.Run(ctx, TriggerOnce, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Status != store.RunPartial || sum.OK != 2 || sum.RefreshWarned != 1 || !sum.NeedsAttention() {
		t.Fatalf("summary = %+v, want partial with one refresh warning", sum)
	}
	if !strings.Contains(logs.String(), "refresh token dies soon") || !strings.Contains(logs.String(), "connection=dying") {
		t.Fatalf("no WARN for the dying token:\n%s", logs.String())
	}
	s.RefreshWarn = time.Hour
	if sum, _ = s.Run(ctx, TriggerOnce, nil); sum.Status != store.RunOK || sum.NeedsAttention() {
		t.Fatalf("outside the window: %+v, want ok", sum)
	}
}
