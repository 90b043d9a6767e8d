package estateguru

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncerhq/syncer/sync/provider"
)

// The doc's sample answer to userInvestments, as sent for requestId
// d16509f6-62ef-4902-bba1-912960e00898: the provider prepends its own prefix.
const (
	sampleRequestID   = "d16509f6-62ef-4902-bba1-912960e00898"
	sampleInvestments = `{
"requestId":
"1313d3df-81d6-45b1-abae-6dc84b71bd16509f6-62ef-4902-bba1-912960e00898",
"currency": "EUR",
"cash": "48872900.14",
"investments": [
{
"change": "0.00",
"investment_amount": "10130.00",
"market_value": "10130.00",
"name": "#5XX Bridge loan (Estonia)",
"principal_left": "10130.00",
"profit": "0.00",
"quantity": "3",
"realized_income": "0.00",
"resourcePath":
"https://estateguru.co/portal/investment/single/EE11111"
}
]
}`
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

var testNow = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

// seen is what a fake endpoint received.
type seen struct {
	Method, Path, ContentType, Accept, Authorization string
	User, Pass                                       string
	BasicOK                                          bool
	Form                                             url.Values
}

// fake serves one handler and records every request it gets.
type fake struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []seen
	answer func(w http.ResponseWriter, r *http.Request, s seen)
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, s seen)) *fake {
	t.Helper()
	f := &fake{t: t, answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
		}
		s := seen{
			Method:        r.Method,
			Path:          r.URL.Path,
			ContentType:   r.Header.Get("Content-Type"),
			Accept:        r.Header.Get("Accept"),
			Authorization: r.Header.Get("Authorization"),
			Form:          r.PostForm,
		}
		s.User, s.Pass, s.BasicOK = r.BasicAuth()
		f.mu.Lock()
		f.reqs = append(f.reqs, s)
		f.mu.Unlock()
		f.answer(w, r, s)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fake) client() *Client {
	return &Client{
		BaseURL:      f.srv.URL + "/",
		ClientID:     "LHV",
		ClientSecret: "client-secret-CANARY-1",
		HTTP:         &provider.HTTP{Client: f.srv.Client(), Timeout: 5 * time.Second},
		Now:          func() time.Time { return testNow },
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// providerError asserts err is a *provider.Error of this provider and op.
func providerError(t *testing.T, err error, op string) *provider.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want a *provider.Error")
	}
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %T %v, want a *provider.Error", err, err)
	}
	if got, want := pe.Provider, Name; got != want {
		t.Fatalf("Provider = %q, want %q (%v)", got, want, err)
	}
	if got, want := pe.Op, op; got != want {
		t.Fatalf("Op = %q, want %q (%v)", got, want, err)
	}
	return pe
}

func TestAuthorizeRequestAndTokenAnswer(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		writeJSON(w, 200, `{"access_token":"fec1e6f2f6c078583756d0c09d7207750baea28dfbc3d4b0f2cb80",
			"token_type":"bearer","expires_in":43199,
			"refresh_token":"06de603504c1e8437709b0f47d07bed11981fe61b522278a81a9232b7",
			"request_id":"1313d3df-81d6-45b1-abae-6dc84b71b`+s.Form.Get("requestId")+`"}`)
	})
	c := f.client()
	a, err := c.Authorize(context.Background(), "http://127.0.0.1:8765/callback")
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	reqs := f.requests()
	if got, want := len(reqs), 1; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
	s := reqs[0]
	if got, want := s.Method+" "+s.Path, "POST /api/oauth/authorize"; got != want {
		t.Fatalf("request = %q, want %q", got, want)
	}
	if got, want := s.ContentType, "application/x-www-form-urlencoded"; got != want {
		t.Fatalf("Content-Type = %q, want %q", got, want)
	}
	if !uuidV4.MatchString(s.Form.Get("requestId")) {
		t.Fatalf("requestId = %q, want a UUID v4", s.Form.Get("requestId"))
	}
	if got, want := s.Form.Get("clientId"), "LHV"; got != want {
		t.Fatalf("clientId = %q, want %q", got, want)
	}
	if got, want := s.Form.Get("clientSecret"), "client-secret-CANARY-1"; got != want {
		t.Fatalf("clientSecret = %q, want %q", got, want)
	}
	if got, want := s.Form.Get("redirectUrl"), "http://127.0.0.1:8765/callback"; got != want {
		t.Fatalf("redirectUrl = %q, want %q", got, want)
	}
	if got, want := len(s.Form), 4; got != want {
		t.Fatalf("form has %d fields (%v), want %d", got, s.Form, want)
	}
	if got, want := a.RequestID, s.Form.Get("requestId"); got != want {
		t.Fatalf("RequestID = %q, want %q", got, want)
	}
	if got, want := a.Token.Access.Reveal(), "fec1e6f2f6c078583756d0c09d7207750baea28dfbc3d4b0f2cb80"; got != want {
		t.Fatalf("Access = %q, want %q", got, want)
	}
	if got, want := a.Token.Refresh.Reveal(), "06de603504c1e8437709b0f47d07bed11981fe61b522278a81a9232b7"; got != want {
		t.Fatalf("Refresh = %q, want %q", got, want)
	}
	if got, want := a.Token.AccessExpiresAt, testNow.Add(43199*time.Second); !got.Equal(want) {
		t.Fatalf("AccessExpiresAt = %v, want %v", got, want)
	}
	if got, want := a.RedirectTo, ""; got != want {
		t.Fatalf("RedirectTo = %q, want %q", got, want)
	}
}

func TestAuthorizeOmitsEmptyRedirectURLAndIsSentOnce(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		writeJSON(w, 503, `{"error":"temporarily_unavailable"}`)
	})
	c := f.client()
	c.HTTP.Retries = 3
	c.HTTP.Sleep = func(context.Context, time.Duration) error { return nil }
	_, err := c.Authorize(context.Background(), "")
	if got, want := providerError(t, err, "authorize").Kind, provider.KindTransient; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	reqs := f.requests()
	if got, want := len(reqs), 1; got != want {
		t.Fatalf("requests = %d, want %d (authorize is never retried)", got, want)
	}
	if _, ok := reqs[0].Form["redirectUrl"]; ok {
		t.Fatalf("form has redirectUrl %q, want none", reqs[0].Form.Get("redirectUrl"))
	}
}

func TestAuthorizeRedirect(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		if r.URL.Path != "/api/oauth/authorize" {
			t.Errorf("the redirect was followed to %s", r.URL.Path)
		}
		http.Redirect(w, r, "/portal/login?next=connect", http.StatusFound)
	})
	a, err := f.client().Authorize(context.Background(), "http://127.0.0.1:8765/callback")
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if got, want := a.RedirectTo, f.srv.URL+"/portal/login?next=connect"; got != want {
		t.Fatalf("RedirectTo = %q, want %q", got, want)
	}
	if !a.Token.Access.IsZero() {
		t.Fatalf("Token.Access is set, want empty")
	}
	if got, want := len(f.requests()), 1; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func TestAuthorizeJSONRedirect(t *testing.T) {
	const callback = "http://127.0.0.1:8765/callback"
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		// The provider echoes our redirectUrl too: that is not where to go.
		writeJSON(w, 200, `{"request_id":"`+s.Form.Get("requestId")+`","redirectUrl":"`+callback+`","url":"/portal/oauth/consent?id=7"}`)
	})
	a, err := f.client().Authorize(context.Background(), callback)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if got, want := a.RedirectTo, f.srv.URL+"/portal/oauth/consent?id=7"; got != want {
		t.Fatalf("RedirectTo = %q, want %q", got, want)
	}
}

func TestAuthorizeRedirectCarryingTheTokens(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		q := url.Values{}
		q.Set("access_token", "access-CANARY-2")
		q.Set("refresh_token", "refresh-CANARY-3")
		q.Set("expires_in", "43199")
		q.Set("request_id", "prefix-"+s.Form.Get("requestId"))
		w.Header().Set("Location", "http://127.0.0.1:8765/callback?"+q.Encode())
		w.WriteHeader(http.StatusSeeOther)
	})
	a, err := f.client().Authorize(context.Background(), "http://127.0.0.1:8765/callback")
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if got, want := a.RedirectTo, ""; got != want {
		t.Fatalf("RedirectTo = %q, want %q (a token never travels there)", got, want)
	}
	if got, want := a.Token.Access.Reveal(), "access-CANARY-2"; got != want {
		t.Fatalf("Access = %q, want %q", got, want)
	}
	if got, want := a.Token.AccessExpiresAt, testNow.Add(43199*time.Second); !got.Equal(want) {
		t.Fatalf("AccessExpiresAt = %v, want %v", got, want)
	}
}

func TestAuthorizeRefusesForeignRequestID(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		writeJSON(w, 200, `{"access_token":"a","refresh_token":"r","expires_in":43199,"request_id":"d16509f6-62ef-4902-bba1-912960e00898"}`)
	})
	_, err := f.client().Authorize(context.Background(), "")
	pe := providerError(t, err, "authorize")
	if got, want := pe.Kind, provider.KindBadAnswer; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "request id mismatch") {
		t.Fatalf("err = %q, want it to say request id mismatch", err)
	}
}

func TestAuthorizeNeedsClientCredentials(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) { writeJSON(w, 200, `{}`) })
	c := f.client()
	c.ClientSecret = ""
	_, err := c.Authorize(context.Background(), "")
	if got, want := providerError(t, err, "authorize").Kind, provider.KindClient; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	if got, want := len(f.requests()), 0; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func TestParseCallback(t *testing.T) {
	c := &Client{Now: func() time.Time { return testNow }}
	ours := "0b7f5bd4-53a5-4f6e-9a49-5b1bb0e7e1a1"
	q := url.Values{
		"access_token":  {"access-1"},
		"refresh_token": {"refresh-1"},
		"expires_in":    {"43199"},
		"request_id":    {"1313d3df-" + ours},
	}
	tok, err := c.ParseCallback(q, ours)
	if err != nil {
		t.Fatalf("ParseCallback: %v", err)
	}
	if got, want := tok.Access.Reveal(), "access-1"; got != want {
		t.Fatalf("Access = %q, want %q", got, want)
	}
	if got, want := tok.Refresh.Reveal(), "refresh-1"; got != want {
		t.Fatalf("Refresh = %q, want %q", got, want)
	}
	if got, want := tok.AccessExpiresAt, testNow.Add(43199*time.Second); !got.Equal(want) {
		t.Fatalf("AccessExpiresAt = %v, want %v", got, want)
	}

	for _, tc := range []struct {
		name string
		edit func(url.Values)
		kind provider.Kind
	}{
		{"no request id", func(q url.Values) { q.Del("request_id") }, provider.KindBadAnswer},
		{"foreign request id", func(q url.Values) { q.Set("request_id", "0b7f5bd4-53a5-4f6e-9a49-000000000000") }, provider.KindBadAnswer},
		{"no access token", func(q url.Values) { q.Del("access_token") }, provider.KindBadAnswer},
		{"bad expires_in", func(q url.Values) { q.Set("expires_in", "soon") }, provider.KindBadAnswer},
		{"refused", func(q url.Values) { q.Set("error", "access_denied") }, provider.KindRequest},
		{"invalid_grant", func(q url.Values) { q.Set("error", "invalid_grant") }, provider.KindReauth},
		{"Unauthorized", func(q url.Values) { q.Set("error", "Unauthorized") }, provider.KindClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q2 := url.Values{}
			for k, v := range q {
				q2[k] = append([]string(nil), v...)
			}
			tc.edit(q2)
			_, err := c.ParseCallback(q2, ours)
			if got, want := providerError(t, err, "authorize").Kind, tc.kind; got != want {
				t.Fatalf("Kind = %v, want %v (%v)", got, want, err)
			}
			if strings.Contains(err.Error(), "access-1") || strings.Contains(err.Error(), "refresh-1") {
				t.Fatalf("err = %q quotes a token", err)
			}
		})
	}
}

func TestRefreshRequestAndRotation(t *testing.T) {
	var answer string
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) { writeJSON(w, 200, answer) })
	c := f.client()

	answer = `{"access_token":"access-2","token_type":"bearer","expires_in":43199,"refresh_token":"refresh-2"}`
	tok, err := c.Refresh(context.Background(), "refresh-1")
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	s := f.requests()[0]
	if got, want := s.Method+" "+s.Path, "POST /oauth/token"; got != want {
		t.Fatalf("request = %q, want %q", got, want)
	}
	if got, want := fmt.Sprintf("%v %s:%s", s.BasicOK, s.User, s.Pass), "true LHV:client-secret-CANARY-1"; got != want {
		t.Fatalf("basic auth = %q, want %q", got, want)
	}
	if got, want := s.Accept, "application/json"; got != want {
		t.Fatalf("Accept = %q, want %q", got, want)
	}
	if got, want := s.Form.Encode(), "grant_type=refresh_token&refresh_token=refresh-1"; got != want {
		t.Fatalf("form = %q, want %q", got, want)
	}
	if got, want := tok.Access.Reveal(), "access-2"; got != want {
		t.Fatalf("Access = %q, want %q", got, want)
	}
	if got, want := tok.Refresh.Reveal(), "refresh-2"; got != want {
		t.Fatalf("Refresh = %q, want %q (the rotated one)", got, want)
	}
	if got, want := tok.AccessExpiresAt, testNow.Add(43199*time.Second); !got.Equal(want) {
		t.Fatalf("AccessExpiresAt = %v, want %v", got, want)
	}

	answer = `{"access_token":"access-3","token_type":"bearer","expires_in":"43199"}`
	tok, err = c.Refresh(context.Background(), "refresh-2")
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got, want := tok.Refresh.Reveal(), "refresh-2"; got != want {
		t.Fatalf("Refresh = %q, want %q (kept: the answer had none)", got, want)
	}
	if got, want := tok.Access.Reveal(), "access-3"; got != want {
		t.Fatalf("Access = %q, want %q", got, want)
	}
}

// A refresh refused for a moment is retried after the policy's backoff: a
// gateway's 502, and the 403 EstateGuru answers a rate-limit breach with
// (TestErrorKinds), retried as a 429 is instead of failing the connection.
func TestRefreshRetriesTransientFailures(t *testing.T) {
	for name, first := range map[string]func(http.ResponseWriter){
		"502": func(w http.ResponseWriter) { writeJSON(w, 502, `<html>bad gateway</html>`) },
		"403": func(w http.ResponseWriter) { w.WriteHeader(http.StatusForbidden) },
	} {
		t.Run(name, func(t *testing.T) {
			n := 0
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
				n++
				if n == 1 {
					first(w)
					return
				}
				writeJSON(w, 200, `{"access_token":"a","refresh_token":"r2","expires_in":43199}`)
			})
			c := f.client()
			c.HTTP.Retries = 2
			c.HTTP.Sleep = func(context.Context, time.Duration) error { return nil }
			tok, err := c.Refresh(context.Background(), "r1")
			if err != nil {
				t.Fatalf("Refresh after a %s: %v, want it retried", name, err)
			}
			if got, want := tok.Refresh.Reveal(), "r2"; got != want {
				t.Fatalf("Refresh = %q, want %q", got, want)
			}
			if got, want := len(f.requests()), 2; got != want {
				t.Fatalf("requests = %d, want %d", got, want)
			}
		})
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	elsewhere := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) { writeJSON(w, 200, `{}`) })
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		http.Redirect(w, r, elsewhere.srv.URL+"/steal", http.StatusTemporaryRedirect)
	})
	_, err := f.client().Refresh(context.Background(), "refresh-CANARY-4")
	if got, want := providerError(t, err, "refresh").Kind, provider.KindBadAnswer; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	_, err = f.client().Investments(context.Background(), "access-CANARY-5")
	if got, want := providerError(t, err, "userInvestments").Kind, provider.KindBadAnswer; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	if got, want := len(elsewhere.requests()), 0; got != want {
		t.Fatalf("the redirect target got %d requests, want %d", got, want)
	}
}

func TestInvestmentsSampleAnswer(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		// Answer as the doc's sample does: its id with the caller's appended.
		body := strings.Replace(sampleInvestments, sampleRequestID, s.Form.Get("requestId"), 1)
		writeJSON(w, 200, body)
	})
	c := f.client()
	p, err := c.Investments(context.Background(), "cf96e458-12a1-4854-908d-419a35118363")
	if err != nil {
		t.Fatalf("Investments: %v", err)
	}
	s := f.requests()[0]
	if got, want := s.Method+" "+s.Path, "POST /userInformation/userInvestments"; got != want {
		t.Fatalf("request = %q, want %q", got, want)
	}
	if got, want := s.Authorization, "Bearer cf96e458-12a1-4854-908d-419a35118363"; got != want {
		t.Fatalf("Authorization = %q, want %q", got, want)
	}
	if got, want := s.ContentType, "application/x-www-form-urlencoded"; got != want {
		t.Fatalf("Content-Type = %q, want %q", got, want)
	}
	if got, want := len(s.Form), 1; got != want {
		t.Fatalf("form = %v, want only requestId", s.Form)
	}
	if !uuidV4.MatchString(s.Form.Get("requestId")) {
		t.Fatalf("requestId = %q, want a UUID v4", s.Form.Get("requestId"))
	}
	if got, want := p.RequestID, s.Form.Get("requestId"); got != want {
		t.Fatalf("RequestID = %q, want %q", got, want)
	}
	if got, want := p.Currency, "EUR"; got != want {
		t.Fatalf("Currency = %q, want %q", got, want)
	}
	if got, want := p.CashCents, int64(4887290014); got != want {
		t.Fatalf("CashCents = %d, want %d", got, want)
	}
	if got, want := len(p.Investments), 1; got != want {
		t.Fatalf("investments = %d, want %d", got, want)
	}
	want := Investment{
		LoanID:                "EE11111",
		Name:                  "#5XX Bridge loan (Estonia)",
		Quantity:              3,
		InvestmentAmountCents: 1013000,
		MarketValueCents:      1013000,
		PrincipalLeftCents:    1013000,
		ResourcePath:          "https://estateguru.co/portal/investment/single/EE11111",
	}
	if got := p.Investments[0]; got != want {
		t.Fatalf("investment = %+v, want %+v", got, want)
	}
	if !json.Valid(p.Raw) || !strings.Contains(string(p.Raw), `"48872900.14"`) {
		t.Fatalf("Raw = %q, want the whole answer", p.Raw)
	}

	// A second call sends a fresh request id.
	if _, err := c.Investments(context.Background(), "cf96e458-12a1-4854-908d-419a35118363"); err != nil {
		t.Fatalf("Investments: %v", err)
	}
	reqs := f.requests()
	if a, b := reqs[0].Form.Get("requestId"), reqs[1].Form.Get("requestId"); a == b {
		t.Fatalf("requestId %q was sent twice, want a fresh one per call", a)
	}
}

func TestInvestmentsRequestID(t *testing.T) {
	for _, tc := range []struct {
		name, answerID string
		ok             bool
	}{
		{"exact", "OURS", true},
		{"prefixed", "1313d3df-81d6-45b1-abae-6dc84b71bOURS", true},
		{"missing", "", true},
		{"foreign", "d16509f6-62ef-4902-bba1-912960e00898", false},
		{"ours with a suffix", "OURS-x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
				id := ""
				if tc.answerID != "" {
					id = `"requestId":"` + strings.ReplaceAll(tc.answerID, "OURS", s.Form.Get("requestId")) + `",`
				}
				writeJSON(w, 200, `{`+id+`"currency":"EUR","cash":"1.00","investments":[]}`)
			})
			_, err := f.client().Investments(context.Background(), "access")
			if tc.ok {
				if err != nil {
					t.Fatalf("Investments: %v", err)
				}
				return
			}
			if got, want := providerError(t, err, "userInvestments").Kind, provider.KindBadAnswer; got != want {
				t.Fatalf("Kind = %v, want %v", got, want)
			}
			if !strings.Contains(err.Error(), "request id mismatch") {
				t.Fatalf("err = %q, want it to say request id mismatch", err)
			}
		})
	}
}

func TestInvestmentsMoneyAsJSONNumbers(t *testing.T) {
	p, code, err := decodePortfolio([]byte(`{"cash":0.29,"currency":"EUR","investments":[
		{"name":"A","quantity":3,"investmentAmount":10130.00,"market_value":-0.5,
		 "principal_left":"12.3400","profit":1e0,"resourcePath":"/x/EE2/"}]}`), "id")
	if code != "" {
		t.Fatalf("code = %q, want none", code)
	}
	if err == nil || !strings.Contains(err.Error(), "profit") || !strings.Contains(err.Error(), "exponent") {
		t.Fatalf("err = %v, want an exponent refused in profit", err)
	}
	if !strings.Contains(err.Error(), `"A"`) || !strings.Contains(err.Error(), "loan EE2") {
		t.Fatalf("err = %v, want it to name the investment and its loan", err)
	}

	p, _, err = decodePortfolio([]byte(`{"cash":0.29,"investments":[
		{"name":"A","quantity":3,"investmentAmount":10130.00,"market_value":-0.5,
		 "principal_left":"12.3400","profit":0.07,"resourcePath":"/x/EE2/"}]}`), "id")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got, want := p.CashCents, int64(29); got != want {
		t.Fatalf("CashCents = %d, want %d", got, want)
	}
	inv := p.Investments[0]
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"quantity", inv.Quantity, 3},
		{"investment amount", inv.InvestmentAmountCents, 1013000},
		{"market value", inv.MarketValueCents, -50},
		{"principal left", inv.PrincipalLeftCents, 1234},
		{"profit", inv.ProfitCents, 7},
	} {
		if c.got != c.want {
			t.Fatalf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if got, want := inv.LoanID, "EE2"; got != want {
		t.Fatalf("LoanID = %q, want %q", got, want)
	}
}

func TestInvestmentsBadMoneyFailsTheWholeAnswer(t *testing.T) {
	body := `{"cash":"1.00","investments":[
		{"name":"Good","market_value":"1.00","resourcePath":"https://estateguru.co/portal/investment/single/EE1"},
		{"name":"Bad","market_value":"1.005","resourcePath":"https://estateguru.co/portal/investment/single/EE2"}]}`
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) { writeJSON(w, 200, body) })
	p, err := f.client().Investments(context.Background(), "access")
	if p != nil {
		t.Fatalf("portfolio = %+v, want none (never partial data)", p)
	}
	pe := providerError(t, err, "userInvestments")
	if got, want := pe.Kind, provider.KindBadAnswer; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	for _, want := range []string{"investment 2", `"Bad"`, "loan EE2", "market_value", `"1.005"`} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %q, want it to contain %q", err, want)
		}
	}
}

func TestInvestmentsTolerance(t *testing.T) {
	p, _, err := decodePortfolio([]byte(`{"request_id":"x-id","Currency":"EUR","cash":"0","extra":{"a":[1,2]},
		"investments":[{"NAME":"n","quantity":"3.0","Resource_Path":"https://e.co/portal/investment/single/EE9?tab=1#x",
		"realizedIncome":"1","unknown":[null]}]}`), "id")
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	inv := p.Investments[0]
	if got, want := fmt.Sprint(p.Currency, inv.Name, inv.Quantity, inv.LoanID, inv.RealizedIncomeCents), "EURn3EE9100"; got != want {
		t.Fatalf("decoded = %q, want %q", got, want)
	}
	for _, body := range []string{
		`{"currency":"EUR"}`,                              // no cash
		`{"cash":"1"} {"cash":"2"}`,                       // two objects
		`[{"cash":"1"}]`,                                  // not an object
		`{"cash":"1","investments":{}}`,                   // not a list
		`{"cash":"1","investments":[null]}`,               // not an object
		`{"cash":"1","investments":[{"quantity":"1.5"}]}`, // fraction of a loan part
		`{"cash":"1","investments":[{"name":5}]}`,         // name not a string
		`{"cash":true}`,                                   // not a number
		`{"cash":""}`,                                     // empty
		`{"cash":"1"`,                                     // truncated
	} {
		if _, _, err := decodePortfolio([]byte(body), "id"); err == nil {
			t.Fatalf("decode %s: err = nil, want an error", body)
		}
	}
}

// TestErrorKinds maps each documented error, and EstateGuru's habits, to the
// Kind the sync loop acts on.
func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		op     string
		status int
		body   string
		kind   provider.Kind
	}{
		{"userInvestments", 401, `{"error":"invalid_token","error_description":"Unable to verify given access token"}`, provider.KindInvalidToken},
		{"refresh", 400, `{"error":"invalid_grant","error_description":"Unable to verify given refresh_token"}`, provider.KindReauth},
		{"refresh", 401, `{"error":"Unauthorized","message":"Client credentials are invalid"}`, provider.KindClient},
		{"authorize", 401, `{"error":"Unauthorized","message":"Client credentials are invalid"}`, provider.KindClient},
		{"refresh", 401, ``, provider.KindClient},
		{"refresh", 401, `{"error":"invalid_token","error_description":"Invalid refresh token (expired)"}`, provider.KindReauth},
		{"userInvestments", 401, `{"error":"Unauthorized"}`, provider.KindInvalidToken},
		{"userInvestments", 400, `{"error":"Errors","message":"Validation failure"}`, provider.KindRequest},
		{"refresh", 400, `{"error":"Errors"}`, provider.KindRequest},
		{"userInvestments", 400, `{"errors":[{"field":"requestId"}]}`, provider.KindRequest},
		{"userInvestments", 403, ``, provider.KindTransient},
		{"userInvestments", 403, `{"error":"Forbidden","message":"Rate limit exceeded"}`, provider.KindTransient},
		{"refresh", 403, `<html>slow down</html>`, provider.KindTransient},
		{"refresh", 403, `{"error":"invalid_grant"}`, provider.KindReauth},
		{"userInvestments", 429, ``, provider.KindTransient},
		{"userInvestments", 500, `{"error":"Internal Server Error"}`, provider.KindTransient},
		{"userInvestments", 200, `{"error":"invalid_token"}`, provider.KindInvalidToken},
		{"refresh", 200, `{"error":"invalid_grant"}`, provider.KindReauth},
		{"userInvestments", 200, `<!DOCTYPE html><html><body>Log in</body></html>`, provider.KindBadAnswer},
		{"refresh", 200, `<!DOCTYPE html><html><body>Log in</body></html>`, provider.KindBadAnswer},
		{"authorize", 200, `<!DOCTYPE html><html><body>Log in</body></html>`, provider.KindBadAnswer},
		{"refresh", 200, `{"token_type":"bearer"}`, provider.KindBadAnswer},
		{"refresh", 200, `{"access_token":"a","token_type":"mac"}`, provider.KindBadAnswer},
		{"userInvestments", 200, `{"cash":"1.00"`, provider.KindBadAnswer},
	} {
		t.Run(fmt.Sprintf("%s %d %.30s", tc.op, tc.status, tc.body), func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
				if strings.HasPrefix(tc.body, "<") {
					w.Header().Set("Content-Type", "text/html")
				} else {
					w.Header().Set("Content-Type", "application/json")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			c := f.client()
			var err error
			switch tc.op {
			case "authorize":
				_, err = c.Authorize(context.Background(), "")
			case "refresh":
				_, err = c.Refresh(context.Background(), "refresh")
			case "userInvestments":
				_, err = c.Investments(context.Background(), "access")
			}
			pe := providerError(t, err, tc.op)
			if got, want := pe.Kind, tc.kind; got != want {
				t.Fatalf("Kind = %v, want %v (%v)", got, want, err)
			}
		})
	}
}

func TestOversizedTokenAnswer(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		writeJSON(w, 200, `{"access_token":"`+strings.Repeat("a", int(provider.MaxTokenBody))+`"}`)
	})
	_, err := f.client().Refresh(context.Background(), "refresh")
	if got, want := providerError(t, err, "refresh").Kind, provider.KindBadAnswer; got != want {
		t.Fatalf("Kind = %v, want %v", got, want)
	}
	if !errors.Is(err, provider.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// TestNoSecretInErrors: a provider echoing what we sent, or an answer broken
// around a token, never puts a token or the client secret into an error.
func TestNoSecretInErrors(t *testing.T) {
	const (
		secret  = "client-secret-CANARY-1"
		refresh = "refresh-CANARY-6"
		access  = "access-CANARY-7"
		issued  = "issued-CANARY-8"
	)
	echo := func(w http.ResponseWriter, r *http.Request, s seen) {
		all := strings.Join([]string{s.Form.Encode(), s.Authorization, s.Pass}, " ")
		desc, _ := json.Marshal("you sent " + all)
		writeJSON(w, 400, `{"error":"invalid_grant","error_description":`+string(desc)+`}`)
	}
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request, s seen)
	}{
		{"echo", echo},
		{"long echo", func(w http.ResponseWriter, r *http.Request, s seen) {
			desc, _ := json.Marshal(strings.Repeat("x", 185) + s.Pass + s.Form.Get("refresh_token") + s.Form.Get("clientSecret") + s.Authorization)
			writeJSON(w, 401, `{"error":"Unauthorized","error_description":`+string(desc)+`}`)
		}},
		{"code is the secret", func(w http.ResponseWriter, r *http.Request, s seen) {
			writeJSON(w, 400, `{"error":"`+s.Pass+s.Form.Get("clientSecret")+strings.TrimPrefix(s.Authorization, "Bearer ")+`"}`)
		}},
		{"truncated token answer", func(w http.ResponseWriter, r *http.Request, s seen) {
			writeJSON(w, 200, `{"access_token":"`+issued+`","refresh_token":"`+issued)
		}},
		{"token answer with an error", func(w http.ResponseWriter, r *http.Request, s seen) {
			writeJSON(w, 200, `{"access_token":"`+issued+`","error":"server_error","error_description":"`+issued+`"}`)
		}},
		{"html", func(w http.ResponseWriter, r *http.Request, s seen) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, `<html>`+issued+s.Form.Encode()+`</html>`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.answer)
			c := f.client()
			_, err1 := c.Authorize(context.Background(), "")
			_, err2 := c.Refresh(context.Background(), refresh)
			_, err3 := c.Investments(context.Background(), access)
			for _, err := range []error{err1, err2, err3} {
				if err == nil {
					t.Fatalf("err = nil, want an error")
				}
				for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
					if strings.Contains(text, "CANARY") {
						t.Fatalf("error text %q leaks a secret", text)
					}
				}
			}
		})
	}
}

func TestParseCents(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"48872900.14", 4887290014},
		{"10130", 1013000},
		{"10130.00", 1013000},
		{"0.5", 50},
		{"0.29", 29},
		{"-12.30", -1230},
		{"+1.00", 100},
		{" 7.01\t", 701},
		{"1.2300", 123},
		{"-0", 0},
		{"007.50", 750},
		{"92233720368547758.07", 9223372036854775807},
		{"-92233720368547758.08", -9223372036854775808},
	} {
		got, err := ParseCents(tc.in)
		if err != nil {
			t.Fatalf("ParseCents(%q): %v", tc.in, err)
		}
		if got != tc.want {
			t.Fatalf("ParseCents(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, says string }{
		{"", "empty"},
		{"   ", "empty"},
		{"-", "expected digits"},
		{"1.", "both sides"},
		{".5", "both sides"},
		{".", "expected digits"},
		{"1e2", "exponent"},
		{"1E-2", "exponent"},
		{"1.5e+3", "exponent"},
		{"e5", "expected digits"},
		{"1,000.00", "grouping"},
		{"1_000", "grouping"},
		{"12 000", "expected digits"},
		{"EUR 1.00", "expected digits"},
		{"1.005", "non-zero digit below"},
		{"0.001", "non-zero digit below"},
		{"--1", "expected digits"},
		{"+-1", "expected digits"},
		{"0x10", "expected digits"},
		{"NaN", "expected digits"},
		{"١٢", "expected digits"},
		{"92233720368547758.08", "too large"},
		{"-92233720368547758.09", "too large"},
		{"99999999999999999999999", "too large"},
	} {
		_, err := ParseCents(tc.in)
		if err == nil {
			t.Fatalf("ParseCents(%q): err = nil, want an error", tc.in)
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Fatalf("ParseCents(%q): err = %q, want it to say %q", tc.in, err, tc.says)
		}
		if !strings.Contains(err.Error(), strconv.Quote(tc.in)) {
			t.Fatalf("ParseCents(%q): err = %q, want it to quote the value", tc.in, err)
		}
	}
	_, err := ParseCents(strings.Repeat("9", 100))
	if err == nil || len(err.Error()) > 150 {
		t.Fatalf("ParseCents(100 nines): err = %v, want a short error", err)
	}
}

func TestLoanID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://estateguru.co/portal/investment/single/EE11111", "EE11111"},
		{"https://estateguru.co/portal/investment/single/EE11111/", "EE11111"},
		{"https://estateguru.co/portal/investment/single/EE11111?lang=en#top", "EE11111"},
		{"/portal/investment/single/LV123", "LV123"},
		{"EE5", "EE5"},
		{"https://estateguru.co/", ""},
		{"https://estateguru.co", ""},
		{"", ""},
		{"%zz/EE7", "EE7"},
	} {
		if got := loanID(tc.in); got != tc.want {
			t.Fatalf("loanID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRequestIDIsAFreshUUID(t *testing.T) {
	c := &Client{}
	a, errA := c.requestID(opInvestments)
	b, errB := c.requestID(opInvestments)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !uuidV4.MatchString(a) {
		t.Fatalf("requestID() = %q, want a UUID v4", a)
	}
	if a == b {
		t.Fatalf("requestID() returned %q twice", a)
	}
}

// formatCents writes cents as a decimal amount, the inverse of ParseCents.
func formatCents(c int64) string {
	sign := ""
	u := uint64(c)
	if c < 0 {
		sign = "-"
		u = uint64(-(c + 1)) + 1
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}

func FuzzParseCents(f *testing.F) {
	for _, s := range []string{"48872900.14", "10130", "0.5", "-12.30", "+1.00", " 1.2300 ",
		"1.", ".5", "1e2", "1,000", "92233720368547758.07", "-92233720368547758.08",
		"92233720368547758.08", "", "-", "0.001", "00000000000000000000000001.10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCents(s)
		if err != nil {
			return
		}
		back := formatCents(c)
		c2, err := ParseCents(back)
		if err != nil || c2 != c {
			t.Fatalf("ParseCents(%q) = %d; formatted %q parses to %d, %v", s, c, back, c2, err)
		}
		// Cross-check against exact rational arithmetic.
		r, ok := new(big.Rat).SetString(strings.TrimSpace(s))
		if !ok {
			t.Fatalf("ParseCents(%q) = %d, but it is not a number", s, c)
		}
		r.Mul(r, big.NewRat(100, 1))
		if !r.IsInt() || r.Num().Cmp(big.NewInt(c)) != 0 {
			t.Fatalf("ParseCents(%q) = %d, want %s", s, c, r.RatString())
		}
	})
}

func FuzzInvestments(f *testing.F) {
	f.Add([]byte(sampleInvestments))
	f.Add([]byte(`{"cash":0.29,"investments":[{"quantity":3,"market_value":1.5,"resourcePath":"/a/b"}]}`))
	f.Add([]byte(`{"error":"invalid_token","error_description":"x"}`))
	f.Add([]byte(`{"cash":"1","investments":null,"requestId":null}`))
	f.Add([]byte(`<html></html>`))
	f.Add([]byte(`{"cash":"1","investments":[{"name":"a","profit":"1.001"}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, code, err := decodePortfolio(body, sampleRequestID)
		if code != "" && (p != nil || err != nil) {
			t.Fatalf("an error answer (%q) came with a portfolio or a decode error", code)
		}
		if err != nil && p != nil {
			t.Fatalf("an error came with a portfolio")
		}
		if err == nil && code == "" {
			if p == nil {
				t.Fatalf("no portfolio and no error")
			}
			if !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			for _, inv := range p.Investments {
				if strings.Contains(inv.LoanID, "/") {
					t.Fatalf("LoanID %q holds a slash", inv.LoanID)
				}
			}
		}
		// Through the client's wrapping too: every error is a *provider.Error.
		resp := &provider.Response{Status: 200, Header: http.Header{}, Body: body}
		if _, err := decodeInvestmentsAnswer(resp, sampleRequestID); err != nil {
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Provider != Name || pe.Op != opInvestments {
				t.Fatalf("err = %#v, want an estateguru userInvestments *provider.Error", err)
			}
		}
	})
}

func FuzzTokenAnswer(f *testing.F) {
	f.Add([]byte(`{"access_token":"fec1e6","token_type":"bearer","expires_in":43199,"refresh_token":"06de60","request_id":"1313d3df-` + sampleRequestID + `"}`))
	f.Add([]byte(`{"access_token":"canary-a","expires_in":"43199"}`))
	f.Add([]byte(`{"error":"canary-b","error_description":"canary-b","access_token":"canary-b"}`))
	f.Add([]byte(`{"access_token":"canary-c","request_id":"canary-c"}`))
	f.Add([]byte(`{"redirectUrl":"/login","request_id":"` + sampleRequestID + `"}`))
	f.Add([]byte(`{"access_token":"canary-d","token_type":"canary-d","expires_in":1e300}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Token-like values in the body that must never reach an error.
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		var canaries []string
		for _, k := range []string{"access_token", "refresh_token"} {
			if s, ok := m[k].(string); ok && strings.Contains(s, "canary") {
				canaries = append(canaries, s)
			}
		}
		resp := &provider.Response{Status: 200, Header: http.Header{}, Body: body}
		check := func(op string, err error) {
			if err == nil {
				return
			}
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Provider != Name || pe.Op != op {
				t.Fatalf("err = %#v, want an estateguru %s *provider.Error", err, op)
			}
			for _, c := range canaries {
				if strings.Contains(err.Error(), c) {
					t.Fatalf("error %q leaks token %q", err, c)
				}
			}
		}
		tok, _, err := decodeToken(opRefresh, resp, "", testNow)
		check(opRefresh, err)
		if err == nil {
			if tok.Access.IsZero() {
				t.Fatalf("no error and no access token")
			}
			if tok.AccessExpiresAt.Before(testNow) && !tok.AccessExpiresAt.IsZero() {
				t.Fatalf("AccessExpiresAt %v is before now", tok.AccessExpiresAt)
			}
		}
		a, err := decodeAuthorize(resp, sampleRequestID, "http://127.0.0.1/cb", "https://estateguru.co/api/oauth/authorize", testNow)
		check(opAuthorize, err)
		if err == nil && a.Token.Access.IsZero() == (a.RedirectTo == "") {
			t.Fatalf("authorization %+v has both or neither of a token and an address", a)
		}
	})
}
