package sync

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
)

// largeAnswer is a userInvestments answer of n investments (1.00 each,
// over 1 MiB for n of 5,000), with tail appended inside the object.
func largeAnswer(n int, tail string) []byte {
	var b strings.Builder
	b.WriteString(`{"currency":"EUR","investments":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"Loan %d with a long enough name to be realistic","resource_path":"/loans/EE%07d","investment_amount":"1.00","market_value":"1.00","principal_left":"1.00","profit":"0.00","realized_income":"0.00","change":"0.00","quantity":1}`, i, i)
	}
	b.WriteString(`],"cash":"12.34"` + tail + `}`)
	return []byte(b.String())
}

// A large answer is decoded while it is stored: every investment and the
// cash (which comes after them) are stored; an answer that turns out at its
// end to be an error answer, or broken, stores nothing, and the error
// answer still gets its refresh and retry.
func TestALargeAnswerIsStoredAsItIsDecoded(t *testing.T) {
	const n = 5000
	if size := len(largeAnswer(n, "")); size < streamFrom {
		t.Fatalf("the test answer is %d bytes, under streamFrom (%d): it would not be streamed", size, streamFrom)
	}
	for _, tc := range []struct {
		name, tail string
		wantOK     bool
		wantRows   int
	}{
		{"whole", "", true, n},
		{"an error answer at its end", `,"error":"invalid_grant"`, false, 0},
		{"broken at its end", `,"cash":`, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newScheduleStore(t)
			body := largeAnswer(n, tc.tail)
			eg := &fakeEstateGuru{investments: func(context.Context) (*estateguru.Answer, error) {
				return estateguru.NewAnswer(body, ""), nil
			}}
			logs := &logBuffer{}
			s := newTestSyncer(st, eg, logs)
			sum, err := s.Run(context.Background(), TriggerOnce, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := sum.OK == 1; got != tc.wantOK {
				t.Fatalf("run: %+v; want ok %v\n%s", sum, tc.wantOK, logs)
			}
			db, err := store.OpenReports(context.Background(), st.Dir())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var rows int
			if err := db.QueryRow("SELECT count(*) FROM estateguru_investment").Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows != tc.wantRows {
				t.Fatalf("%d investment rows stored, want %d", rows, tc.wantRows)
			}
			if !tc.wantOK {
				var snaps int
				db.QueryRow("SELECT count(*) FROM estateguru_snapshot").Scan(&snaps)
				if snaps != 0 {
					t.Fatalf("%d snapshots stored from a bad answer, want 0", snaps)
				}
				return
			}
			var cash, invested int64
			var currency string
			if err := db.QueryRow("SELECT currency, cash_cents, investment_amount_cents FROM estateguru_portfolios").Scan(&currency, &cash, &invested); err != nil {
				t.Fatal(err)
			}
			if currency != "EUR" || cash != 1234 || invested != 100*n {
				t.Fatalf("stored %s %d cash, %d invested; want EUR 1234, %d", currency, cash, invested, 100*n)
			}
		})
	}
}
