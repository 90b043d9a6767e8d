package sync

import (
	"context"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// refusedDuringShutdown is a provider whose refresh grant is answered with
// invalid_grant after the run was told to stop: the answer arrives inside
// the grant's shutdown grace.
type refusedDuringShutdown struct{ stop context.CancelFunc }

func (f *refusedDuringShutdown) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	f.stop()
	return provider.Token{}, &provider.Error{Provider: estateguru.Name, Op: "refresh", Kind: provider.KindReauth, Status: 400, Code: "invalid_grant"}
}

func (f *refusedDuringShutdown) Fetch(context.Context, provider.Secret) (Snapshot, error) {
	panic("fetch after a refused refresh")
}

// An invalid_grant that arrives while the run is being stopped still marks
// the connection reauth_required: the refused token is never sent again.
func TestInvalidGrantDuringShutdownStillNeedsReauth(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// An expired access token: the sync must refresh first.
	tok := provider.Token{Access: "access-1", Refresh: "refresh-1", AccessExpiresAt: time.Now().Add(-time.Minute)}
	c, err := st.Connect(ctx, "eg", estateguru.Name, "https://estateguru.invalid", tok)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var logs logBuffer
	s := newTestSyncer(st, &refusedDuringShutdown{stop: stop}, &logs)
	sum, err := s.Run(runCtx, TriggerOnce, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.NeedsReauth != 1 || sum.Interrupted != 0 {
		t.Fatalf("summary = %+v, want the connection counted as needing re-login, not interrupted", sum)
	}
	got, err := st.ConnectionByName(ctx, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateReauthRequired {
		t.Fatalf("state = %q, want %q: the next run would send the refused token again", got.State, store.StateReauthRequired)
	}
}
