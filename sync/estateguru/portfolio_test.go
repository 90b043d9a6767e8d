package estateguru

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// generatedAnswer is a userInvestments answer shaped like the sandbox's:
// n investments, amounts of every size, a name with quotes and non-ASCII.
func generatedAnswer(n int) string {
	var b strings.Builder
	b.WriteString(`{"requestId":"0123456789abcdef0123456789abcdef-` + sampleRequestID + `","currency":"EUR","cash":"48872900.14","investments":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		name := fmt.Sprintf("#%d Bridge loan (Estonia)", 1000+i)
		if i%7 == 2 {
			name = `#` + strconv.Itoa(1000+i) + ` Development loan \"Ülemiste City\" – stage 2 (Estonia)`
		}
		amount := fmt.Sprintf("%d.%02d", (i*7919)%1000000, i%100)
		fmt.Fprintf(&b, `{"change":"-%d.%02d","investment_amount":"%s","market_value":"%s","name":"%s",`+
			`"principal_left":"%s","profit":"%d.00","quantity":"%d","realized_income":"0.29",`+
			`"resourcePath":"https://estateguru.co/portal/investment/single/EE%d"}`,
			i%3, i%100, amount, amount, name, amount, i%50, 1+i%20, 10000+i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// BenchmarkDecodePortfolio measures the decoder alone on 100,000
// investments.
func BenchmarkDecodePortfolio(b *testing.B) {
	body := []byte(generatedAnswer(100_000))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := decodePortfolio(body, sampleRequestID); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`""`, `"abc"`, `"Ülemiste – 2"`, `"a\"b"`, `"\u00dc"`, "\"\xff\"", "\"a\tb\"", `"`, `x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := plainString(raw)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("plainString(%q) = %q, but json.Unmarshal fails: %v", raw, got, err)
		}
		if got != want {
			t.Fatalf("plainString(%q) = %q, json.Unmarshal %q", raw, got, want)
		}
	})
}

func FuzzPlainLoanID(f *testing.F) {
	for _, s := range []string{"https://estateguru.co/portal/investment/single/EE11111", "http://127.0.0.1:8080/a/b/",
		"https://e.co", "https://e.co/", "http:///a/b", "http://[::1/x", "http://h:bad/x", "https://u:p@h/x//",
		"https://h/a?b", "https://h/%41", "HTTPS://h/a", "https://h/a b", "/x/EE2/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, ok := plainLoanID(s); ok {
			if want := parsedLoanID(s); got != want {
				t.Fatalf("plainLoanID(%q) = %q, parsedLoanID %q", s, got, want)
			}
		}
	})
}

// The last member of a kind wins, as encoding/json has it, a null one
// included (an amount that is null is 0).
func TestRepeatedMembersLastWins(t *testing.T) {
	p, _, err := decodePortfolio([]byte(`{"cash":"1","cash":"2","investments":[
		{"profit":"1","profit":null,"name":"a","Name":"b","market_value":"x","marketValue":"3"}]}`), "id")
	if err != nil {
		t.Fatal(err)
	}
	inv := p.Investments[0]
	if got, want := fmt.Sprintf("%d %d %s %d", p.CashCents, inv.ProfitCents, inv.Name, inv.MarketValueCents), "200 0 b 300"; got != want {
		t.Fatalf("cash, profit, name, market value = %s, want %s", got, want)
	}
}

// A second list of investments is refused: read as a stream, the first may
// be stored already.
func TestTwoListsOfInvestmentsAreRefused(t *testing.T) {
	_, _, err := decodePortfolio([]byte(`{"cash":"1","investments":[{"name":"a"}],"investments":[{"name":"b"}]}`), "id")
	if err == nil || !strings.Contains(err.Error(), "two lists of investments") {
		t.Fatalf("err = %v, want the two lists refused", err)
	}
}

// Stream hands over every investment in order and keeps none; an error of
// its caller stops it and comes back as it is.
func TestStreamHandsOverEachInvestment(t *testing.T) {
	body := []byte(`{"cash":"1","currency":"EUR","investments":[{"name":"a"},{"name":"b"},{"name":"c"}]}`)
	var names []string
	p, err := NewAnswer(body, "").Stream(func(inv Investment) error {
		names = append(names, inv.Name)
		return nil
	})
	if err != nil || p.Investments != nil || p.CashCents != 100 || strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("Stream: %v, kept %d, cash %d, handed %v; want a,b,c handed over, none kept, cash 100", err, len(p.Investments), p.CashCents, names)
	}
	stop := errors.New("store full")
	if _, err := NewAnswer(body, "").Stream(func(Investment) error { return stop }); err != stop {
		t.Fatalf("err = %v, want the caller's own error", err)
	}
}
