package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/secret"
	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/store/pgstore/pgtest"
	"github.com/syncerhq/syncer/sync"
)

var (
	_ sync.Store   = (*pgstore.Store)(nil)
	_ sync.Claimer = (*pgstore.Store)(nil)
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func open(t *testing.T, dbURL string, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	if opts.TokenKey == nil && !opts.PlaintextTokens {
		opts.TokenKey = testKey
	}
	s, err := pgstore.Open(context.Background(), dbURL, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func token(refresh string) secret.Token {
	return secret.Token{
		Access: secret.Secret("access-" + refresh), Refresh: secret.Secret(refresh),
		AccessExpiresAt:  time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC),
		RefreshExpiresAt: time.Date(2027, 11, 23, 6, 0, 0, 0, time.UTC),
	}
}

func TestOpenMigratesOnceAndRefusesNewerSchema(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	s := open(t, dbURL, pgstore.Options{})
	s.Close()
	// A second open (another instance) finds it migrated.
	s = open(t, dbURL, pgstore.Options{})
	s.Close()
	pgtest.Exec(t, dbURL, "INSERT INTO schema_migrations (version, name) VALUES (99, 'from the future')")
	_, err := pgstore.Open(ctx, dbURL, pgstore.Options{TokenKey: testKey})
	if err == nil || !strings.Contains(err.Error(), "newer than this syncer knows") {
		t.Fatalf("Open of a newer schema: err = %v, want a refusal", err)
	}
}

func TestOpenNeedsAKeyAndKeepsThePasswordOut(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	_, err := pgstore.Open(ctx, dbURL, pgstore.Options{})
	if pe, ok := errors.AsType[*pgstore.Error](err); !ok || pe.Problem != pgstore.KeyRequired || !errors.Is(err, pgstore.ErrConfig) {
		t.Fatalf("Open without a key: err = %v, want a configuration error asking for a key", err)
	}
	bad := pgtest.WithUser(dbURL, "syncer", "not-the-password-s3cr3t")
	_, err = pgstore.Open(ctx, bad, pgstore.Options{TokenKey: testKey})
	if pe, ok := errors.AsType[*pgstore.Error](err); !ok || pe.Problem != pgstore.LoginRefused || !errors.Is(err, pgstore.ErrConfig) {
		t.Fatalf("Open with a wrong password: err = %v, want a configuration error: login refused", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("the error quotes the password: %v", err)
	}
	open(t, dbURL, pgstore.Options{}).Close()
	other := []byte("ffffffffffffffffffffffffffffffff")
	_, err = pgstore.Open(ctx, dbURL, pgstore.Options{TokenKey: other})
	if !errors.Is(err, pgstore.ErrConfig) {
		t.Fatalf("Open with another key: err = %v, want a configuration error", err)
	}
}

func TestTokensSealedAndSavesCompareAndSwap(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	a := open(t, dbURL, pgstore.Options{Instance: "a:1"})
	b := open(t, dbURL, pgstore.Options{Instance: "b:2"})
	// A canary long enough that random ciphertext never contains it by
	// chance (a two-letter one did, about one run in a hundred).
	const canary = "refresh-canary-7f3a9c2e"
	c, err := a.Connect(ctx, "eg", "estateguru", "http://127.0.0.1:1", token(canary))
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	if err := a.Pool().QueryRow(ctx, "SELECT refresh_token FROM vault.token").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, canary) || !strings.HasPrefix(raw, "gcm2:") {
		t.Fatalf("stored refresh token %q is not sealed", raw)
	}
	// Both read generation 1; b saves first; a's save is then stale.
	if _, err := a.Token(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Token(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveToken(ctx, c.ID, token("r2")); err != nil {
		t.Fatal(err)
	}
	if err := a.SaveToken(ctx, c.ID, token("r2-late")); !errors.Is(err, pgstore.ErrStaleToken) {
		t.Fatalf("late save: err = %v, want ErrStaleToken", err)
	}
	got, err := a.Token(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Refresh.Reveal() != "r2" || got.Generation != 2 {
		t.Fatalf("stored = %q gen %d, want r2 gen 2", got.Refresh.Reveal(), got.Generation)
	}
	if err := a.SaveToken(ctx, c.ID, token("r3")); err != nil {
		t.Fatalf("save after reading the newest: %v", err)
	}
	conns, err := a.Connections(ctx)
	if err != nil || len(conns) != 1 || !conns[0].RefreshExpiresAt.Equal(token("r3").RefreshExpiresAt) {
		t.Fatalf("Connections = %+v, %v", conns, err)
	}
}

func TestClaimsSplitTheWork(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	a := open(t, dbURL, pgstore.Options{Instance: "a:1", Lease: 3 * time.Second})
	b := open(t, dbURL, pgstore.Options{Instance: "b:2", Lease: 3 * time.Second})
	c, err := a.Connect(ctx, "eg", "estateguru", "http://127.0.0.1:1", token("r1"))
	if err != nil {
		t.Fatal(err)
	}
	period := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	ca, err := a.ClaimConnection(ctx, c.ID, period, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ClaimConnection(ctx, c.ID, period, false); !errors.Is(err, sync.ErrSkip) {
		t.Fatalf("claim of a held connection: err = %v, want ErrSkip", err)
	}
	if err := ca.Valid(ctx); err != nil {
		t.Fatalf("Valid: %v", err)
	}
	ca.Release(true)
	if _, err := b.ClaimConnection(ctx, c.ID, period, false); !errors.Is(err, sync.ErrSkip) || !strings.Contains(err.Error(), "synced it in this period") {
		t.Fatalf("claim of a connection synced this period by another: err = %v, want ErrSkip", err)
	}
	// Named (-connection), another instance syncs it anew.
	cb, err := b.ClaimConnection(ctx, c.ID, period, true)
	if err != nil {
		t.Fatalf("a named claim: %v", err)
	}
	cb.Release(true)
	// The same instance may sync it again in the period; the next period
	// is anyone's.
	ca, err = b.ClaimConnection(ctx, c.ID, period, false)
	if err != nil {
		t.Fatalf("re-claim by the same instance: %v", err)
	}
	ca.Release(false)
	cb, err = a.ClaimConnection(ctx, c.ID, period.Add(24*time.Hour), false)
	if err != nil {
		t.Fatalf("claim in the next period: %v", err)
	}
	cb.Release(true)

	// LockConnection (connect, disconnect) waits for a claim to end.
	cb, err = b.ClaimConnection(ctx, c.ID, period.Add(48*time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(300 * time.Millisecond); cb.Release(false) }()
	unlock, err := a.LockConnection(ctx, c.ID, 10*time.Second)
	if err != nil {
		t.Fatalf("LockConnection: %v", err)
	}
	unlock()
}

func TestLeaseOfADeadInstanceExpires(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	a := open(t, dbURL, pgstore.Options{Instance: "a:1", Lease: 2 * time.Second})
	b := open(t, dbURL, pgstore.Options{Instance: "b:2", Lease: 2 * time.Second})
	c, err := a.Connect(ctx, "eg", "estateguru", "http://127.0.0.1:1", token("r1"))
	if err != nil {
		t.Fatal(err)
	}
	period := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	if _, err := a.ClaimConnection(ctx, c.ID, period, false); err != nil {
		t.Fatal(err)
	}
	a.Close() // dies: no renewal, no release
	deadline := time.Now().Add(10 * time.Second)
	for {
		cb, err := b.ClaimConnection(ctx, c.ID, period, false)
		if err == nil {
			cb.Release(true)
			break
		}
		if !errors.Is(err, sync.ErrSkip) || time.Now().After(deadline) {
			t.Fatalf("claim after the holder died: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSnapshotsAndRuns(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	s := open(t, dbURL, pgstore.Options{Instance: "host:42"})
	c, err := s.Connect(ctx, "eg", "estateguru", "http://127.0.0.1:1", token("r1"))
	if err != nil {
		t.Fatal(err)
	}
	period := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	invs := []store.Investment{
		{LoanID: "1", Name: "a", Quantity: 1, InvestmentAmountCents: 100, MarketValueCents: 110},
		{LoanID: "2", Name: "b", Quantity: 2, InvestmentAmountCents: 200, MarketValueCents: 190},
	}
	for i := 0; i < 2; i++ { // the second replaces the first
		if err := s.SaveEstateGuru(ctx, c.ID, period, period.Add(time.Hour), store.EstateGuruSnapshot{
			Currency: "EUR", CashCents: 5, Investments: store.InvestmentsOf(invs), Raw: []byte(`{"b":1, "a":2}`),
		}); err != nil {
			t.Fatal(err)
		}
	}
	var n, mv int64
	var raw string
	if err := s.Pool().QueryRow(ctx, "SELECT investments, market_value_cents, raw::text FROM estateguru_portfolios").Scan(&n, &mv, &raw); err != nil {
		t.Fatal(err)
	}
	if n != 2 || mv != 300 || raw != `{"b":1, "a":2}` {
		t.Fatalf("portfolio = %d investments, %d market value, raw %q", n, mv, raw)
	}
	boom := errors.New("decoding failed")
	err = s.SaveEstateGuru(ctx, c.ID, period, period, store.EstateGuruSnapshot{Raw: []byte(`{}`),
		Investments: func(yield func(store.Investment, error) bool) { yield(store.Investment{}, boom) }})
	if !errors.Is(err, boom) {
		t.Fatalf("a failing sequence: err = %v, want its own error", err)
	}
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM estateguru_investments").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after a failed save: %d investments (%v), want the 2 stored before", n, err)
	}
	// Totals past what 64-bit cents hold refuse the answer too.
	huge := []store.Investment{{LoanID: "1", MarketValueCents: 5e18}, {LoanID: "2", MarketValueCents: 5e18}}
	err = s.SaveEstateGuru(ctx, c.ID, period, period, store.EstateGuruSnapshot{Raw: []byte(`{}`), Investments: store.InvestmentsOf(huge)})
	if err == nil || !strings.Contains(err.Error(), "market_value amounts add up") {
		t.Fatalf("totals past int64: err = %v, want the answer refused", err)
	}
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM estateguru_investments").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the refused save: %d investments (%v), want the 2 stored before", n, err)
	}
	id, err := s.StartRun(ctx, "once")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordResult(ctx, id, c.ID, "ok", "", period, period); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, id, "ok", 1, 0); err != nil {
		t.Fatal(err)
	}
	var inst string
	if err := s.Pool().QueryRow(ctx, "SELECT instance FROM sync_runs WHERE id = $1", id).Scan(&inst); err != nil || inst != "host:42" {
		t.Fatalf("sync_runs.instance = %q (%v), want host:42", inst, err)
	}
}

// An instance whose lease ran out (a long pause, say) and was taken over
// refreshes nothing and commits no snapshot: the fence stops it.
func TestALapsedLeaseIsFenced(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	a := open(t, dbURL, pgstore.Options{Instance: "a:1", Lease: 30 * time.Second})
	b := open(t, dbURL, pgstore.Options{Instance: "b:2", Lease: 30 * time.Second})
	c, err := a.Connect(ctx, "eg", "estateguru", "http://127.0.0.1:1", token("r1"))
	if err != nil {
		t.Fatal(err)
	}
	period := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	ca, err := a.ClaimConnection(ctx, c.ID, period, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Release(false)
	// a stalls past its lease; b takes the connection over.
	pgtest.Exec(t, dbURL, "UPDATE connection_lease SET expires_at = now() - interval '1 second'")
	cb, err := b.ClaimConnection(ctx, c.ID, period, false)
	if err != nil {
		t.Fatalf("claim of an expired lease: %v", err)
	}
	defer cb.Release(false)
	if err := ca.Valid(ctx); !errors.Is(err, pgstore.ErrLeaseLost) {
		t.Fatalf("Valid of a lapsed lease: err = %v, want ErrLeaseLost", err)
	}
	err = a.SaveEstateGuru(ctx, c.ID, period, period, store.EstateGuruSnapshot{Raw: []byte(`{}`)})
	if !errors.Is(err, pgstore.ErrLeaseLost) {
		t.Fatalf("snapshot under a lapsed lease: err = %v, want ErrLeaseLost", err)
	}
	if err := b.SaveEstateGuru(ctx, c.ID, period, period, store.EstateGuruSnapshot{Raw: []byte(`{}`)}); err != nil {
		t.Fatalf("snapshot of the new holder: %v", err)
	}
	if err := cb.Valid(ctx); err != nil {
		t.Fatalf("Valid of the new holder: %v", err)
	}
}
