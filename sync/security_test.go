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

func (echoingEstateGuru) FetchInvestments(_ context.Context, access provider.Secret) (*estateguru.Answer, error) {
	a := access.Reveal()
	return estateguru.NewAnswer([]byte(`{"currency":"EUR","cash":"1.00","investments":[],"debug":"Bearer `+a+`","DEBUG":"`+strings.ToUpper(a)+`"}`), ""), nil
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
