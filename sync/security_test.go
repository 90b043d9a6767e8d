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

// echoingEstateGuru answers with a portfolio that quotes the access token
// it was called with, as is and upper-cased.
type echoingEstateGuru struct{}

func (echoingEstateGuru) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	panic("no refresh expected")
}

func (echoingEstateGuru) Fetch(_ context.Context, access provider.Secret) (Snapshot, error) {
	a := access.Reveal()
	return answered(estateguru.NewAnswer([]byte(`{"currency":"EUR","cash":"1.00","investments":[],"debug":"Bearer `+a+`","DEBUG":"`+strings.ToUpper(a)+`"}`), ""), nil)
}

// Finding 6: an answer holding the call's own access token is stored with
// the token replaced, and the log says so at WARN, with the count.
func TestRawAnswerIsStoredWithoutTheCallsSecrets(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const access = "access-canary-42"
	tok := provider.Token{Access: access, Refresh: "refresh-canary-42", AccessExpiresAt: time.Now().Add(time.Hour)}
	if _, err := st.Connect(ctx, "eg", estateguru.Name, "https://estateguru.invalid", tok); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s := newTestSyncer(st, echoingEstateGuru{}, logs)
	if sum, err := s.Run(ctx, TriggerOnce, nil); err != nil || sum.OK != 1 {
		t.Fatalf("run: %+v, %v\n%s", sum, err, logs)
	}
	db, err := store.OpenReports(ctx, st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var raw string
	if err := db.QueryRow("SELECT raw FROM estateguru_portfolios").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(raw), access) {
		t.Fatalf("raw holds the access token: %s", raw)
	}
	if !strings.Contains(raw, provider.Redacted) {
		t.Fatalf("raw = %s, want the token redacted", raw)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "count=2") || strings.Contains(strings.ToLower(l), access) {
		t.Fatalf("want a WARN line with count=2 and no token:\n%s", l)
	}
}

// slowEstateGuru issues short-lived access tokens; its first data call
// takes longer than one lives (retries after 5xx answers) and ends in
// invalid_token.
type slowEstateGuru struct {
	clock              *time.Time
	refreshes, fetches int
}

func (f *slowEstateGuru) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	f.refreshes++
	return provider.Token{Access: "access-short", Refresh: "refresh-next", AccessExpiresAt: f.clock.Add(10 * time.Minute)}, nil
}

func (f *slowEstateGuru) Fetch(context.Context, provider.Secret) (Snapshot, error) {
	f.fetches++
	if f.fetches == 1 {
		*f.clock = f.clock.Add(11 * time.Minute)
		return nil, &provider.Error{Provider: estateguru.Name, Op: "investments", Kind: provider.KindInvalidToken, Code: "invalid_token", Status: 401}
	}
	return answered(sampleAnswer(), nil)
}

// Finding 13: a token refreshed in this run that expired during the data
// call's retries is refreshed once more, not taken as a failure.
func TestAnAccessTokenThatExpiredDuringRetriesIsRefreshedAgain(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := time.Now().UTC()
	if _, err := st.Connect(ctx, "eg", estateguru.Name, "https://estateguru.invalid", provider.Token{Refresh: "refresh-0"}); err != nil {
		t.Fatal(err)
	}
	eg := &slowEstateGuru{clock: &clock}
	logs := &logBuffer{}
	s := newTestSyncer(st, eg, logs)
	s.Now = func() time.Time { return clock }
	if sum, err := s.Run(ctx, TriggerOnce, nil); err != nil || sum.OK != 1 {
		t.Fatalf("run: %+v, %v; want ok\n%s", sum, err, logs)
	}
	if eg.refreshes != 2 || eg.fetches != 2 {
		t.Fatalf("refreshes = %d, fetches = %d; want 2 and 2", eg.refreshes, eg.fetches)
	}
}

// panickyEstateGuru panics with the access token in its message.
type panickyEstateGuru struct{}

func (panickyEstateGuru) Refresh(context.Context, provider.Secret) (provider.Token, error) {
	panic("no refresh expected")
}

func (panickyEstateGuru) Fetch(_ context.Context, access provider.Secret) (Snapshot, error) {
	panic("bad state with token " + access.Reveal())
}

// A panic whose message quotes a token leaves it in no log line, error or
// stored result.
func TestPanicMessagesAreScrubbed(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const access = "CANARY-access-panic-9"
	tok := provider.Token{Access: access, Refresh: "CANARY-refresh-panic-9", AccessExpiresAt: time.Now().Add(time.Hour)}
	if _, err := st.Connect(ctx, "eg", estateguru.Name, "https://estateguru.invalid", tok); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s := newTestSyncer(st, panickyEstateGuru{}, logs)
	if sum, err := s.Run(ctx, TriggerOnce, nil); err != nil || sum.Failed != 1 {
		t.Fatalf("run: %+v, %v", sum, err)
	}
	if strings.Contains(logs.String(), "CANARY") || !strings.Contains(logs.String(), "internal error") {
		t.Fatalf("logs:\n%s", logs)
	}
	c, err := st.ConnectionByName(ctx, "eg")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.LastError, "CANARY") || !strings.Contains(c.LastError, provider.Redacted) {
		t.Fatalf("last_error = %q", c.LastError)
	}
}
