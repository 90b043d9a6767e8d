package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// rotatingEstateGuru rotates the refresh token on every refresh, as
// EstateGuru does: only the newest one works.
type rotatingEstateGuru struct {
	mu      stdsync.Mutex
	valid   string
	n       int
	refused atomic.Int32
}

func (f *rotatingEstateGuru) Refresh(_ context.Context, refresh provider.Secret) (provider.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if refresh.Reveal() != f.valid {
		f.refused.Add(1)
		return provider.Token{}, &provider.Error{Provider: "estateguru", Op: "refresh", Kind: provider.KindReauth, Code: "invalid_grant"}
	}
	f.n++
	f.valid = fmt.Sprintf("refresh-%d", f.n)
	// The access token expires at once, so every run refreshes.
	return provider.Token{Access: provider.Secret(fmt.Sprintf("access-%d", f.n)), Refresh: provider.Secret(f.valid), AccessExpiresAt: time.Now()}, nil
}

func (f *rotatingEstateGuru) Fetch(context.Context, provider.Secret) (Snapshot, error) {
	return answered(sampleAnswer(), nil)
}

// rotatingStore is a store with one EstateGuru connection, "eg", holding
// the refresh token rotatingEstateGuru{valid: "refresh-0"} takes.
func rotatingStore(t *testing.T) (*store.Store, store.Connection) {
	t.Helper()
	st, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := st.Connect(context.Background(), "eg", estateguru.Name, "https://estateguru.invalid", provider.Token{Refresh: "refresh-0"})
	if err != nil {
		t.Fatal(err)
	}
	return st, c
}

// failingTokenStore fails the first SaveToken, as a disk that filled after
// the write check would.
type failingTokenStore struct {
	*store.Store
	failed atomic.Bool
}

func (f *failingTokenStore) SaveToken(ctx context.Context, connID int64, tok provider.Token) error {
	if !f.failed.Swap(true) {
		return errors.New("disk is full")
	}
	return f.Store.SaveToken(ctx, connID, tok)
}

// A rotated token whose save failed is not lost while the process lives:
// the next run saves it first and refreshes with it, never with the dead
// stored one.
func TestARotatedTokenThatCouldNotBeSavedIsSavedByTheNextRun(t *testing.T) {
	ctx := context.Background()
	st, _ := rotatingStore(t)
	eg := &rotatingEstateGuru{valid: "refresh-0"}
	logs := &logBuffer{}
	s := newTestSyncer(&failingTokenStore{Store: st}, eg, logs)

	sum, err := s.Run(ctx, TriggerOnce, nil)
	if err != nil || sum.Failed != 1 {
		t.Fatalf("first run: %+v, %v; want the connection failed (its token could not be saved)", sum, err)
	}
	if !strings.Contains(logs.String(), "kept in memory") {
		t.Fatalf("the failure does not say the token is kept:\n%s", logs)
	}
	sum, err = s.Run(ctx, TriggerOnce, nil)
	if err != nil || sum.OK != 1 {
		t.Fatalf("second run: %+v, %v; want ok\n%s", sum, err, logs)
	}
	if n := eg.refused.Load(); n != 0 {
		t.Fatalf("%d refreshes with a dead token", n)
	}
	stored, err := st.Token(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stored.Token.Refresh.Reveal(), "refresh-2"; got != want {
		t.Fatalf("stored refresh token %q, want %q (the newest)", got, want)
	}
	if strings.Contains(logs.String(), "refresh-1") || strings.Contains(logs.String(), "access-1") {
		t.Fatalf("a token in the logs:\n%s", logs)
	}
}

// A token kept in memory never overwrites one a person stored since: after
// a disconnect and connect, the new login's token is the one used and kept.
func TestAKeptTokenNeverOverwritesAReconnect(t *testing.T) {
	ctx := context.Background()
	st, c := rotatingStore(t)
	eg := &rotatingEstateGuru{valid: "refresh-0"}
	s := newTestSyncer(&failingTokenStore{Store: st}, eg, &logBuffer{})
	if sum, err := s.Run(ctx, TriggerOnce, nil); err != nil || sum.Failed != 1 {
		t.Fatalf("first run: %+v, %v; want the connection failed", sum, err)
	}
	// The person re-connects: a new login, a new refresh token.
	if err := st.Disconnect(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	eg.mu.Lock()
	eg.valid = "relogin"
	eg.mu.Unlock()
	if _, err := st.Connect(ctx, "eg", estateguru.Name, "https://estateguru.invalid", provider.Token{Refresh: "relogin"}); err != nil {
		t.Fatal(err)
	}
	if sum, err := s.Run(ctx, TriggerOnce, nil); err != nil || sum.OK != 1 {
		t.Fatalf("run after the re-connect: %+v, %v; want ok", sum, err)
	}
	if n := eg.refused.Load(); n != 0 {
		t.Fatalf("%d refreshes with a stale token: the kept one overwrote the re-connect", n)
	}
}

// unmirroredTokenStore saves tokens durably but fails to copy their expiry
// into snapshots.db, as a broken reporting file would.
type unmirroredTokenStore struct{ *store.Store }

func (u unmirroredTokenStore) SaveToken(ctx context.Context, connID int64, tok provider.Token) error {
	if err := u.Store.SaveToken(ctx, connID, tok); err != nil {
		return err
	}
	return fmt.Errorf("%w: snapshots.db: disk I/O error", store.ErrExpiryNotMirrored)
}

// A rotated token that is durable in the vault is used, and the connection
// synced, even when its expiry could not be copied to the reports: it is
// neither kept in memory as unsaved nor reported as a failure.
func TestARotatedTokenSavedWithoutItsExpiryMirrorIsUsed(t *testing.T) {
	ctx := context.Background()
	st, c := rotatingStore(t)
	eg := &rotatingEstateGuru{valid: "refresh-0"}
	logs := &logBuffer{}
	s := newTestSyncer(unmirroredTokenStore{st}, eg, logs)
	for run := 1; run <= 2; run++ {
		sum, err := s.Run(ctx, TriggerOnce, nil)
		if err != nil || sum.OK != 1 {
			t.Fatalf("run %d: %+v, %v; want the connection synced\n%s", run, sum, err, logs)
		}
	}
	if n := eg.refused.Load(); n != 0 {
		t.Fatalf("the provider refused %d refresh tokens: a dead one was sent", n)
	}
	stored, err := st.Token(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.Token.Refresh.Reveal(); got != "refresh-2" {
		t.Fatalf("stored refresh token = %q, want refresh-2", got)
	}
}

// slowTokenStore holds every token save until the data has been fetched
// (or 2 s), as a busy disk would.
type slowTokenStore struct {
	*store.Store
	fetched chan struct{}
}

func (s *slowTokenStore) SaveToken(ctx context.Context, connID int64, tok provider.Token) error {
	select {
	case <-s.fetched:
	case <-time.After(2 * time.Second):
		return errors.New("the data was not fetched while the token was being saved")
	}
	return s.Store.SaveToken(ctx, connID, tok)
}

// fetchSignalling closes fetched at its first fetch.
type fetchSignalling struct {
	*rotatingEstateGuru
	fetched chan struct{}
	once    stdsync.Once
}

func (f *fetchSignalling) Fetch(ctx context.Context, access provider.Secret) (Snapshot, error) {
	f.once.Do(func() { close(f.fetched) })
	return f.rotatingEstateGuru.Fetch(ctx, access)
}

// A refreshed token is saved while its access token fetches the data, not
// before: the save is no longer the time between a connection's two
// requests. It is still durable before the run records the connection.
func TestARefreshedTokenIsSavedWhileTheDataIsFetched(t *testing.T) {
	ctx := context.Background()
	st, _ := rotatingStore(t)
	fetched := make(chan struct{})
	eg := &fetchSignalling{rotatingEstateGuru: &rotatingEstateGuru{valid: "refresh-0"}, fetched: fetched}
	logs := &logBuffer{}
	s := newTestSyncer(&slowTokenStore{Store: st, fetched: fetched}, eg, logs)
	sum, err := s.Run(ctx, TriggerOnce, nil)
	if err != nil || sum.OK != 1 {
		t.Fatalf("run: %+v, %v; want ok\n%s", sum, err, logs)
	}
	stored, err := st.Token(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stored.Token.Refresh.Reveal(), "refresh-1"; got != want {
		t.Fatalf("stored refresh token %q, want %q", got, want)
	}
}

// panickingTokenStore panics in SaveToken, quoting the token, as a bug
// deep in the vault might.
type panickingTokenStore struct{ *store.Store }

func (p panickingTokenStore) SaveToken(_ context.Context, _ int64, tok provider.Token) error {
	panic("sealing " + tok.Refresh.Reveal() + " failed")
}

// keepToken puts a token refreshed from refresh-0 (the stored one) into
// s's memory, as a run whose save failed leaves it.
func keepToken(s *Syncer, connID int64) provider.Token {
	tok := provider.Token{Access: "access-kept", Refresh: "refresh-kept", AccessExpiresAt: time.Now().Add(time.Hour)}
	s.kept.keep(connID, keptToken{tok: tok, replaces: "refresh-0"})
	return tok
}

// A kept token whose save panics stays kept (it may be the only refresh
// token the provider still takes), and the error says nothing of it.
func TestAKeptTokenStaysKeptWhenItsSavePanics(t *testing.T) {
	ctx := context.Background()
	st, c := rotatingStore(t)
	eg := &rotatingEstateGuru{valid: "refresh-kept"}
	s := newTestSyncer(panickingTokenStore{st}, eg, &logBuffer{})
	keepToken(s, c.ID)
	_, err := s.newTokenSource(ctx, c, eg, s.logger())
	if err == nil || !strings.Contains(err.Error(), "internal error while saving") {
		t.Fatalf("err = %v, want the save's panic as an error", err)
	}
	if strings.Contains(err.Error(), "refresh-kept") {
		t.Fatalf("the error quotes the kept refresh token: %v", err)
	}
	if u, ok := s.kept.take(c.ID); !ok || u.tok.Refresh != "refresh-kept" {
		t.Fatalf("kept token after the panic: %+v, %v; want refresh-kept still kept", u.tok.Refresh, ok)
	}
}

// A kept token saved durably, with only its expiry's copy in the reports
// failing, is saved: it is used, not kept again, and the connection does
// not fail for it (as settle treats a fresh token).
func TestAKeptTokenSavedWithoutItsExpiryMirrorIsUsed(t *testing.T) {
	ctx := context.Background()
	st, c := rotatingStore(t)
	eg := &rotatingEstateGuru{valid: "refresh-kept"}
	s := newTestSyncer(unmirroredTokenStore{st}, eg, &logBuffer{})
	kept := keepToken(s, c.ID)
	ts, err := s.newTokenSource(ctx, c, eg, s.logger())
	if err != nil {
		t.Fatalf("newTokenSource: %v; want the kept token saved and used", err)
	}
	if ts.tok.Refresh != kept.Refresh {
		t.Fatalf("token in use %q, want the kept one", ts.tok.Refresh.Reveal())
	}
	if _, ok := s.kept.take(c.ID); ok {
		t.Fatal("the kept token is still kept after it was saved")
	}
	stored, err := st.Token(ctx, c.ID)
	if err != nil || stored.Token.Refresh != kept.Refresh {
		t.Fatalf("stored refresh token %q (%v), want the kept one", stored.Token.Refresh.Reveal(), err)
	}
}

// A run that was stopped sends no new refresh grant, even when a write
// check passed within the last second: only a grant already sent gets
// its grace.
func TestAStoppedRunAsksForNoRefresh(t *testing.T) {
	st, c := rotatingStore(t)
	eg := &rotatingEstateGuru{valid: "refresh-0"}
	s := newTestSyncer(st, eg, &logBuffer{})
	ts, err := s.newTokenSource(context.Background(), c, eg, s.logger())
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.writable.check(context.Background(), st, time.Now); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Token on a stopped run: %v, want context.Canceled", err)
	}
	eg.mu.Lock()
	defer eg.mu.Unlock()
	if eg.n != 0 {
		t.Fatalf("%d refreshes sent after the run was stopped", eg.n)
	}
}
