package estateguru

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/sync/provider"
)

func answerOf(body string) *Answer {
	return &Answer{resp: &provider.Response{Status: http.StatusOK, Header: http.Header{}, Body: []byte(body)}, reqID: sampleRequestID}
}

// streamAll reads a whole stream: its header and every investment, up to
// the first error.
func streamAll(t *testing.T, a *Answer) (cur string, cash int64, ok bool, got []Investment, err error) {
	t.Helper()
	st := a.Stream()
	defer st.Close()
	cur, cash, ok, err = st.Header(context.Background())
	if err != nil || !ok {
		return cur, cash, ok, nil, err
	}
	for inv, e := range st.Investments() {
		if e != nil {
			return cur, cash, ok, got, e
		}
		got = append(got, inv)
	}
	return cur, cash, ok, got, nil
}

// An ordinary answer streams exactly what Decode returns, batch boundaries
// and all.
func TestStreamHandsOverWhatDecodeReturns(t *testing.T) {
	for _, n := range []int{0, 1, streamBatch - 1, streamBatch, streamBatch + 1, 5*streamBatch + 7} {
		a := answerOf(generatedAnswer(n))
		want, err := a.Decode()
		if err != nil {
			t.Fatal(err)
		}
		cur, cash, ok, got, err := streamAll(t, a)
		if err != nil || !ok {
			t.Fatalf("n=%d: ok %v, error %v", n, ok, err)
		}
		if cur != want.Currency || cash != want.CashCents || len(got) != len(want.Investments) {
			t.Fatalf("n=%d: header %s %d and %d investments, want %s %d and %d", n, cur, cash, len(got), want.Currency, want.CashCents, len(want.Investments))
		}
		if len(got) > 0 && !reflect.DeepEqual(got, want.Investments) {
			t.Fatalf("n=%d: streamed investments differ from decoded ones", n)
		}
	}
}

// Cash named after the investments: nothing can be handed over early, but
// the answer still streams, whole, at its end.
func TestStreamWithCashAfterTheInvestments(t *testing.T) {
	body := `{"currency":"EUR","investments":[{"investment_amount":"1.50","resourcePath":"https://estateguru.co/portal/investment/single/EE1"}],"cash":"2.00"}`
	cur, cash, ok, got, err := streamAll(t, answerOf(body))
	if err != nil || !ok || cur != "EUR" || cash != 200 || len(got) != 1 || got[0].InvestmentAmountCents != 150 || got[0].LoanID != "EE1" {
		t.Fatalf("got %s %d ok=%v %+v, %v", cur, cash, ok, got, err)
	}
}

// What the fast path declines after it began handing over ends the stream
// with ErrNotStreamed: a malformed amount deep in the list, a second cash
// member, a second list. Decode then has the last word.
func TestStreamEndsWithErrNotStreamedWhenTheAnswerIsNotOrdinary(t *testing.T) {
	big := generatedAnswer(3 * streamBatch)
	bad := replaceNth(big, `"realized_income":"0.29"`, `"realized_income":"0,29"`, 2*streamBatch+1)
	for name, body := range map[string]string{
		"malformed amount":             bad,
		"cash repeated after the list": strings.TrimSuffix(big, "}") + `,"cash":"1.00"}`,
		"investments repeated":         strings.TrimSuffix(big, "}") + `,"investments":[]}`,
	} {
		cur, _, ok, got, err := streamAll(t, answerOf(body))
		if !ok || cur != "EUR" {
			t.Fatalf("%s: the header should come before the list's problem (ok %v)", name, ok)
		}
		if !errors.Is(err, ErrNotStreamed) {
			t.Fatalf("%s: stream ended with %v after %d investments, want ErrNotStreamed", name, err, len(got))
		}
		if len(got) == 0 {
			t.Fatalf("%s: nothing was handed over before the problem: the test proves nothing", name)
		}
	}
	if _, err := answerOf(bad).Decode(); err == nil || !strings.Contains(err.Error(), "realized_income") {
		t.Fatalf("Decode of the malformed answer: %v, want an error naming the field", err)
	}
}

// An error answer is declined before anything is handed over.
func TestStreamDeclinesAnErrorAnswer(t *testing.T) {
	_, _, ok, got, err := streamAll(t, answerOf(`{"error":"invalid_token","error_description":"expired"}`))
	if ok || err != nil || len(got) != 0 {
		t.Fatalf("ok %v, %d investments, error %v; want declined", ok, len(got), err)
	}
}

// A reader that stops early and closes the stream stops the decoder; Close
// returns (the test would hang otherwise).
func TestStreamCloseStopsTheDecoder(t *testing.T) {
	st := answerOf(generatedAnswer(40 * streamBatch)).Stream()
	if _, _, ok, err := st.Header(context.Background()); !ok || err != nil {
		t.Fatalf("header: ok %v, %v", ok, err)
	}
	n := 0
	for _, err := range st.Investments() {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 10 {
			break
		}
	}
	st.Close()
}

// replaceNth replaces the nth (from 1) occurrence of old in s.
func replaceNth(s, old, new string, n int) string {
	at := -1
	for range n {
		i := strings.Index(s[at+1:], old)
		if i < 0 {
			panic("replaceNth: too few occurrences")
		}
		at += 1 + i
	}
	return s[:at] + new + s[at+len(old):]
}
