package estateguru

// The fast path of the portfolio decoder (portfolio_fast.go) must never
// change what is decoded: whenever it answers, the careful path
// (decodePortfolioBody) must give the same portfolio. These tests and fuzz
// targets hold it to that, and make sure ordinary answers do take it.

import (
	"encoding/json"
	"fmt"
	"reflect"
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

// careful decodes with the careful path alone.
func careful(body []byte, reqID string) (*Portfolio, string, error) {
	var code string
	p, err := decodePortfolioBody(body, reqID, &code)
	return p, code, err
}

// checkFastAgrees fails the test when the fast path answers something the
// careful path would not.
func checkFastAgrees(t *testing.T, body []byte, reqID string) (fastOK bool) {
	t.Helper()
	fast, ok := decodePortfolioFast(body, reqID)
	if !ok {
		return false
	}
	slow, code, err := careful(body, reqID)
	if err != nil || code != "" {
		t.Fatalf("the fast path decoded %q, the careful path says code %q, error %v", clip(body), code, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("the paths disagree on %q:\nfast    %+v\ncareful %+v", clip(body), fast, slow)
	}
	return true
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func TestFastPathTakesOrdinaryAnswers(t *testing.T) {
	for _, body := range []string{sampleInvestments, generatedAnswer(1), generatedAnswer(500),
		`{"cash":"1.00","investments":[]}`, `{"cash":"1.00","investments":null}`, `{"cash":0}`} {
		if !checkFastAgrees(t, []byte(body), sampleRequestID) {
			t.Fatalf("an ordinary answer took the slow path: %q", clip([]byte(body)))
		}
	}
	p, ok := decodePortfolioFast([]byte(generatedAnswer(500)), sampleRequestID)
	if !ok {
		t.Fatal("the generated answer took the slow path")
	}
	if got, want := len(p.Investments), 500; got != want {
		t.Fatalf("len(Investments) = %d, want %d", got, want)
	}
	if got, want := cap(p.Investments), 500; got != want {
		t.Fatalf("cap(Investments) = %d, want %d (sized once)", got, want)
	}
}

// TestFastPathLeavesTheRestToTheCarefulPath: for answers the fast path
// does not take, decodePortfolio still answers as the careful path does,
// errors and their messages included.
func TestFastPathLeavesTheRestToTheCarefulPath(t *testing.T) {
	for _, body := range []string{
		`{"error":"invalid_token","error_description":"x"}`,
		`{"cash":"1","investments":[{"name":"a","profit":"1.001"}]}`,
		`{"cash":"1","investments":[{"n\u0061me":"escaped key"}]}`,
		`{"cash":"1","investments":[{"name":"bad utf-8 ` + "\xff" + `"}]}`,
		`{"cash":"1","requestId":"someone else's"}`,
		`{"cash":"1"} {"cash":"2"}`,
		`{"cash":"1","investments":[1,]}`,
		`{"cash":"1","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
		`{"currency":"EUR"}`,
		``,
	} {
		if _, ok := decodePortfolioFast([]byte(body), sampleRequestID); ok {
			t.Fatalf("the fast path took %q", clip([]byte(body)))
		}
		p1, code1, err1 := decodePortfolio([]byte(body), sampleRequestID)
		p2, code2, err2 := careful([]byte(body), sampleRequestID)
		if code2 != "" {
			p2, err2 = nil, nil
		}
		if !reflect.DeepEqual(p1, p2) || code1 != code2 || fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("%q: decodePortfolio = %+v, %q, %v; careful = %+v, %q, %v", clip([]byte(body)), p1, code1, err1, p2, code2, err2)
		}
	}
}

func FuzzDecodePortfolioFast(f *testing.F) {
	f.Add([]byte(sampleInvestments))
	f.Add([]byte(generatedAnswer(3)))
	f.Add([]byte(`{"request_id":"x-id","Currency":" EUR ","cash":"0","extra":{"a":[1,2,{"b":null}]},
		"investments":[{"NAME":"n","quantity":"3.0","Resource_Path":"https://e.co/portal/investment/single/EE9?tab=1#x",
		"realizedIncome":"1","unknown":[null,true,false,-1.5e3]}]}`))
	f.Add([]byte(`{"cash":0.29,"investments":[{"quantity":3,"market_value":-0.5,"resourcePath":"/a/b"},{}]}`))
	f.Add([]byte(`{"cash":"1","investments":[{"name":"a","name":"b","profit":"1","profit":null}],"investments":null}`))
	f.Add([]byte(`{"cash":null,"cash":"2.5","investments":[{"name":"\u00dc\n\"q\"","change":"-0.01"}]}`))
	f.Add([]byte(`{"cash":"1","investments":[{"investment__amount":"2","i-n-v-e-s-t-m-e-n-t-a-m-o-u-n-t":"3"}]}`))
	f.Add([]byte(`{"error":"","cash":"1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastAgrees(t, body, "id")
		checkFastAgrees(t, body, sampleRequestID)
	})
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

func FuzzPlainCents(f *testing.F) {
	for _, s := range []string{`"48872900.14"`, `"0.29"`, `"-0.5"`, `"10130"`, `10130.00`, `-0.07`, `"007.50"`,
		`"1.005"`, `"1e2"`, `"+1"`, `"999999999999999.99"`, `"9999999999999999"`, `""`, `"-"`, `"1."`, `".5"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, ok := plainCents(raw); ok {
			s, err := numberText(raw)
			if err != nil {
				t.Fatalf("plainCents(%q) = %d, but numberText fails: %v", raw, got, err)
			}
			want, err := ParseCents(s)
			if err != nil || got != want {
				t.Fatalf("plainCents(%q) = %d; ParseCents = %d, %v", raw, got, want, err)
			}
		}
		if got, ok := plainWhole(raw); ok {
			s, err := numberText(raw)
			if err != nil {
				t.Fatalf("plainWhole(%q) = %d, but numberText fails: %v", raw, got, err)
			}
			want, err := parseQuantity(s)
			if err != nil || got != want {
				t.Fatalf("plainWhole(%q) = %d; parseQuantity = %d, %v", raw, got, want, err)
			}
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

func TestCountElements(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{`]`, 0},
		{` ] `, 0},
		{`{}]`, 1},
		{`{"a":"],}"},{"b":[1,2,{"c":"\"]"}]},3]`, 3},
		{`"a\\",{}]`, 2},
		{`{"a":1}`, 0}, // never ends
	} {
		if got := countElements([]byte(tc.in)); got != tc.want {
			t.Fatalf("countElements(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
