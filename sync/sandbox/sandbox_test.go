package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testEmail    = "john.doe@everreal.co"
	testPassword = "Password"
	testInvestor = "lhv-investor"
)

func start(t testing.TB, opts Options) *Sandbox {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.AddEverRealUser(EverRealUser{
		Email: testEmail, Password: testPassword, FirstName: "John",
		CompanyID: "76dccab0-652e-4543-802c-7c701c0b3bb3", CompanyName: "automation-reporting-qa",
		PartnerID: "76dccab0-652e-4543-802c-7c701c046579", PartnerName: "test-documentation", PartnerSubdomain: "test-documentation",
	})
	s.AddEstateGuruInvestor(Investor{
		Name: testInvestor, Currency: "EUR", Cash: "48872900.14",
		Investments: []Investment{{
			Name: "#5XX Bridge loan (Estonia)", Quantity: "3", InvestmentAmount: "10130.00", MarketValue: "10130.00",
			PrincipalLeft: "10130.00", Profit: "0.00", RealizedIncome: "0.00", Change: "0.00", LoanID: "EE11111",
		}},
	})
	return s
}

// answer is a decoded response: status, headers, and the body as raw JSON
// fields (so a test can tell a number from a string).
type answer struct {
	status int
	header http.Header
	body   []byte
	fields map[string]json.RawMessage
}

func (a answer) str(t testing.TB, key string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(a.fields[key], &s); err != nil {
		t.Fatalf("field %q = %s, want a JSON string (%v)", key, a.fields[key], err)
	}
	return s
}

func do(t testing.TB, client *http.Client, req *http.Request) answer {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", req.URL.Path, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	_ = json.Unmarshal(body, &a.fields)
	return a
}

func postJSON(t testing.TB, u string, body any) answer {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	return do(t, nil, req)
}

func postForm(t testing.TB, u string, form url.Values, header map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(t, nil, req)
}

func get(t testing.TB, u, bearerToken string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if bearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+bearerToken)
	}
	return do(t, nil, req)
}

func wantError(t testing.TB, a answer, status int, code string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d, want %d (body %s)", a.status, status, a.body)
	}
	if got := a.str(t, "error"); got != code {
		t.Fatalf("error = %q, want %q (body %s)", got, code, a.body)
	}
}

func passwordGrant(t testing.TB, s *Sandbox, user, password string) answer {
	t.Helper()
	return postJSON(t, s.EverRealURL+"/accounts/oauth/token", map[string]string{
		"username": user, "password": password,
		"client_id": DefaultEverRealClientID, "client_secret": DefaultEverRealClientSecret,
		"scope": "offline_access *", "grant_type": "password",
	})
}

func everRealRefresh(t testing.TB, s *Sandbox, refresh string) answer {
	t.Helper()
	return postJSON(t, s.EverRealURL+"/accounts/oauth/token", map[string]string{
		"grant_type": "refresh_token", "client_id": DefaultEverRealClientID,
		"client_secret": DefaultEverRealClientSecret, "refresh_token": refresh,
	})
}

func estateGuruRefresh(t testing.TB, s *Sandbox, refresh string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.EstateGuruURL+"/oauth/token",
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(DefaultEstateGuruClientID, DefaultEstateGuruClientSecret)
	return do(t, nil, req)
}

func investments(t testing.TB, s *Sandbox, access, requestID string) answer {
	t.Helper()
	form := url.Values{}
	if requestID != "" {
		form.Set("requestId", requestID)
	}
	return postForm(t, s.EstateGuruURL+"/userInformation/userInvestments", form, map[string]string{"Authorization": "Bearer " + access})
}

// jwtClaims decodes a JWT's payload without checking its signature.
func jwtClaims(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	for _, p := range parts {
		if strings.ContainsAny(p, "=+/") {
			t.Fatalf("token part %q is not unpadded base64url", p)
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestEverRealPasswordGrant(t *testing.T) {
	s := start(t, Options{})
	a := passwordGrant(t, s, testEmail, testPassword)
	if a.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (%s)", a.status, a.body)
	}
	if got, want := string(a.fields["expires_in"]), "3600"; got != want {
		t.Fatalf("expires_in = %s, want the number %s", got, want)
	}
	if got, want := a.str(t, "token_type"), "Bearer"; got != want {
		t.Fatalf("token_type = %q, want %q", got, want)
	}
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if a.header.Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	if got, want := a.header.Get("X-RateLimit-Limit"), "300"; got != want {
		t.Errorf("X-RateLimit-Limit = %q, want %q", got, want)
	}
	refresh := jwtClaims(t, a.str(t, "refresh_token"))
	for _, k := range []string{"jti", "sub", "exp", "iat"} {
		if _, ok := refresh[k]; !ok {
			t.Errorf("refresh token claims lack %q: %v", k, refresh)
		}
	}
	if got, want := refresh["exp"].(float64)-refresh["iat"].(float64), DefaultRefreshTTL.Seconds(); got != want {
		t.Errorf("refresh lifetime = %vs, want %vs", got, want)
	}
	access := jwtClaims(t, a.str(t, "access_token"))
	if got, want := access["exp"].(float64)-access["iat"].(float64), 3600.0; got != want {
		t.Errorf("access lifetime = %vs, want %vs", got, want)
	}

	me := get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token"))
	if me.status != http.StatusOK {
		t.Fatalf("users/me status = %d (%s)", me.status, me.body)
	}
	if got, want := me.str(t, "email"), testEmail; got != want {
		t.Fatalf("email = %q, want %q", got, want)
	}
}

func TestEverRealTokenEndpointRefusals(t *testing.T) {
	s := start(t, Options{})
	tokenURL := s.EverRealURL + "/accounts/oauth/token"

	a := passwordGrant(t, s, "nobody@everreal.co", testPassword)
	wantError(t, a, http.StatusForbidden, "invalid_grant")
	if got, want := a.str(t, "error_description"), "heimdall.validation.user.does.not.exist"; got != want {
		t.Fatalf("error_description = %q, want %q", got, want)
	}
	wantError(t, passwordGrant(t, s, testEmail, "wrong"), http.StatusForbidden, "invalid_grant")

	form := url.Values{"username": {testEmail}, "password": {testPassword}, "client_id": {DefaultEverRealClientID},
		"client_secret": {DefaultEverRealClientSecret}, "scope": {"offline_access *"}, "grant_type": {"password"}}
	wantError(t, postForm(t, tokenURL, form, nil), http.StatusBadRequest, "invalid_request")

	wantError(t, postJSON(t, tokenURL, map[string]string{
		"username": testEmail, "password": testPassword, "client_id": DefaultEverRealClientID,
		"client_secret": "wrong", "scope": "offline_access *", "grant_type": "password",
	}), http.StatusUnauthorized, "invalid_client")

	wantError(t, postJSON(t, tokenURL, map[string]string{
		"username": testEmail, "password": testPassword, "client_id": DefaultEverRealClientID,
		"client_secret": DefaultEverRealClientSecret, "scope": "offline_access", "grant_type": "password",
	}), http.StatusBadRequest, "invalid_scope")

	if got, want := s.Stats().EverRealTokenRequests, 5; got != want {
		t.Fatalf("EverRealTokenRequests = %d, want %d", got, want)
	}
}

func TestEverRealRefreshAnswer(t *testing.T) {
	s := start(t, Options{})
	refresh := s.IssueEverRealRefreshToken(testEmail)
	a := everRealRefresh(t, s, refresh)
	if a.status != http.StatusOK {
		t.Fatalf("status = %d (%s)", a.status, a.body)
	}
	if got, want := string(a.fields["expires_in"]), `"3600"`; got != want {
		t.Fatalf("expires_in = %s, want the string %s", got, want)
	}
	if _, ok := a.fields["refresh_token"]; ok {
		t.Fatalf("refresh answer has a refresh_token: %s", a.body)
	}
	// EverReal does not rotate: the same refresh token works again.
	if a := everRealRefresh(t, s, refresh); a.status != http.StatusOK {
		t.Fatalf("second refresh status = %d (%s)", a.status, a.body)
	}
	if got, want := s.RefreshUses(refresh), 2; got != want {
		t.Fatalf("RefreshUses = %d, want %d", got, want)
	}

	me := get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token"))
	if me.status != http.StatusOK {
		t.Fatalf("users/me status = %d (%s)", me.status, me.body)
	}

	wantError(t, everRealRefresh(t, s, "not-a-token"), http.StatusForbidden, "invalid_grant")
	expired := s.IssueEverRealRefreshTokenExpiring(testEmail, time.Now().Add(-time.Minute))
	wantError(t, everRealRefresh(t, s, expired), http.StatusForbidden, "invalid_grant")
	if got, want := s.Stats().RefusedRefresh, 2; got != want {
		t.Fatalf("RefusedRefresh = %d, want %d", got, want)
	}
}

func TestEverRealUsersMeShape(t *testing.T) {
	s := start(t, Options{})
	a := everRealRefresh(t, s, s.IssueEverRealRefreshToken(testEmail))
	me := get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token"))
	if me.status != http.StatusOK {
		t.Fatalf("status = %d (%s)", me.status, me.body)
	}
	var keys []string
	for k := range me.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"areTermsAccepted", "companies", "createdAt", "currentCompany", "email", "firstName", "id",
		"isActive", "isTenant", "lastName", "profileData", "profilePhoto", "tokenInfo", "updatedAt"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	var body struct {
		LastName    *string `json:"lastName"`
		ProfileData struct{ Language string }
		Companies   []struct {
			ID, Name  string
			IsDefault bool
		}
		CurrentCompany struct {
			ID, Name  string
			IsDefault bool
			Partner   struct{ ID, Name, Subdomain string }
		}
		TokenInfo struct {
			Audience  string   `json:"audience"`
			Scope     []string `json:"scope"`
			UserID    string   `json:"user_id"`
			ExpiresIn int      `json:"expires_in"`
		}
	}
	if err := json.Unmarshal(me.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.LastName != nil {
		t.Errorf("lastName = %q, want null", *body.LastName)
	}
	if got, want := body.CurrentCompany.Partner.Subdomain, "test-documentation"; got != want {
		t.Errorf("partner subdomain = %q, want %q", got, want)
	}
	if len(body.Companies) != 1 || !body.Companies[0].IsDefault || !body.CurrentCompany.IsDefault {
		t.Errorf("companies = %+v, current %+v", body.Companies, body.CurrentCompany)
	}
	if got, want := body.TokenInfo.Scope, DefaultEverRealScopes; !slices.Equal(got, want) {
		t.Errorf("scope = %v, want %v", got, want)
	}
	if body.TokenInfo.ExpiresIn <= 3500 || body.TokenInfo.ExpiresIn > 3600 {
		t.Errorf("tokenInfo.expires_in = %d, want just under 3600", body.TokenInfo.ExpiresIn)
	}

	s.SetEverRealScopes(testEmail, []string{"offline_access"})
	me = get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token"))
	if err := json.Unmarshal(me.body, &body); err != nil {
		t.Fatal(err)
	}
	if got, want := body.TokenInfo.Scope, []string{"offline_access"}; !slices.Equal(got, want) {
		t.Errorf("scope after SetEverRealScopes = %v, want %v", got, want)
	}

	info := get(t, s.EverRealURL+"/accounts/api/tokeninfo?access_token="+url.QueryEscape(a.str(t, "access_token")), "")
	if info.status != http.StatusOK || info.str(t, "user_id") == "" {
		t.Fatalf("tokeninfo = %d %s", info.status, info.body)
	}
	if got, want := s.Stats().DataRequests[string(EverRealMe)], 2; got != want {
		t.Fatalf("DataRequests[users/me] = %d, want %d", got, want)
	}
}

func TestEverRealAccessTokenExpiry(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := start(t, Options{Now: clock})
	a := everRealRefresh(t, s, s.IssueEverRealRefreshToken(testEmail))
	access := a.str(t, "access_token")
	if me := get(t, s.EverRealURL+"/accounts/api/users/me", access); me.status != http.StatusOK {
		t.Fatalf("status = %d", me.status)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	wantError(t, get(t, s.EverRealURL+"/accounts/api/users/me", access), http.StatusUnauthorized, "invalid_token")

	access = everRealRefresh(t, s, s.IssueEverRealRefreshToken(testEmail)).str(t, "access_token")
	s.ExpireAccessTokens()
	wantError(t, get(t, s.EverRealURL+"/accounts/api/users/me", access), http.StatusUnauthorized, "invalid_token")
	wantError(t, get(t, s.EverRealURL+"/accounts/api/users/me", ""), http.StatusUnauthorized, "invalid_token")
}

func TestEverRealRevoke(t *testing.T) {
	s := start(t, Options{})
	refresh := s.IssueEverRealRefreshToken(testEmail)
	a := postForm(t, s.EverRealURL+"/accounts/api/tokenrevoke?token="+url.QueryEscape(refresh), nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("revoke status = %d (%s)", a.status, a.body)
	}
	wantError(t, everRealRefresh(t, s, refresh), http.StatusForbidden, "invalid_grant")
	// Revoking again, or an unknown token, is fine but revokes nothing.
	get(t, s.EverRealURL+"/accounts/api/tokenrevoke?token="+url.QueryEscape(refresh), "")
	if got, want := s.Stats().Revoked, 1; got != want {
		t.Fatalf("Revoked = %d, want %d", got, want)
	}

	other := s.IssueEverRealRefreshToken(testEmail)
	s.RevokeAll(EverReal, testEmail)
	wantError(t, everRealRefresh(t, s, other), http.StatusForbidden, "invalid_grant")
	fresh := s.IssueEverRealRefreshToken(testEmail)
	if a := everRealRefresh(t, s, fresh); a.status != http.StatusOK {
		t.Fatalf("a token issued after RevokeAll: status %d", a.status)
	}
}

func TestEverRealFiftyTokenLimit(t *testing.T) {
	s := start(t, Options{})
	var tokens []string
	for range EverRealMaxRefreshTokens + 1 {
		a := passwordGrant(t, s, testEmail, testPassword)
		if a.status != http.StatusOK {
			t.Fatalf("login status = %d", a.status)
		}
		tokens = append(tokens, a.str(t, "refresh_token"))
	}
	wantError(t, everRealRefresh(t, s, tokens[0]), http.StatusForbidden, "invalid_grant")
	for _, tok := range []string{tokens[1], tokens[len(tokens)-1]} {
		if a := everRealRefresh(t, s, tok); a.status != http.StatusOK {
			t.Fatalf("a kept token: status %d (%s)", a.status, a.body)
		}
	}
	if got, want := s.EverRealRefreshTokenCount(testEmail), EverRealMaxRefreshTokens; got != want {
		t.Fatalf("stored tokens = %d, want %d", got, want)
	}
	if got, want := s.Stats().Evicted, 1; got != want {
		t.Fatalf("Evicted = %d, want %d", got, want)
	}
}

func pkcePair() (verifier, challenge string) {
	verifier = strings.Repeat("v3rifier-", 6) // 54 characters
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestEverRealAuthorizationCodePKCE(t *testing.T) {
	s := start(t, Options{})
	s.AddEverRealUser(EverRealUser{Email: "second@everreal.co", Password: "x"})
	verifier, challenge := pkcePair()
	redirect := "http://127.0.0.1:1/callback"
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	authorize := func(hint string) url.Values {
		t.Helper()
		q := url.Values{"response_type": {"code"}, "client_id": {DefaultEverRealClientID}, "redirect_uri": {redirect},
			"state": {"st4te"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"offline_access *"}}
		if hint != "" {
			q.Set("login_hint", hint)
		}
		req, _ := http.NewRequest(http.MethodGet, s.EverRealURL+"/accounts/dialog/authorize?"+q.Encode(), nil)
		a := do(t, noFollow, req)
		if a.status != http.StatusFound {
			t.Fatalf("authorize status = %d, want 302 (%s)", a.status, a.body)
		}
		loc, err := url.Parse(a.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect {
			t.Fatalf("redirected to %q, want %q", got, redirect)
		}
		return loc.Query()
	}
	exchange := func(code, verifier string) answer {
		return postJSON(t, s.EverRealURL+"/accounts/oauth/token", map[string]string{
			"grant_type": "authorization_code", "client_id": DefaultEverRealClientID, "client_secret": DefaultEverRealClientSecret,
			"code": code, "redirect_uri": redirect, "code_verifier": verifier,
		})
	}

	q := authorize("second@everreal.co")
	if got, want := q.Get("state"), "st4te"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	wantError(t, exchange(q.Get("code"), strings.Repeat("x", 43)), http.StatusForbidden, "invalid_grant")
	a := exchange(q.Get("code"), verifier)
	if a.status != http.StatusOK {
		t.Fatalf("exchange status = %d (%s)", a.status, a.body)
	}
	if got, want := string(a.fields["expires_in"]), "3600"; got != want {
		t.Fatalf("expires_in = %s, want %s", got, want)
	}
	me := get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token"))
	if got, want := me.str(t, "email"), "second@everreal.co"; got != want {
		t.Fatalf("signed in as %q, want %q", got, want)
	}
	// A replayed code is refused and revokes what it issued.
	wantError(t, exchange(q.Get("code"), verifier), http.StatusForbidden, "invalid_grant")
	wantError(t, everRealRefresh(t, s, a.str(t, "refresh_token")), http.StatusForbidden, "invalid_grant")

	// Without login_hint, the first user.
	a = exchange(authorize("").Get("code"), verifier)
	me = get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token"))
	if got, want := me.str(t, "email"), testEmail; got != want {
		t.Fatalf("signed in as %q, want %q", got, want)
	}
}

func estateGuruAuthorize(t testing.TB, s *Sandbox, form url.Values) answer {
	t.Helper()
	return postForm(t, s.EstateGuruURL+"/api/oauth/authorize", form, nil)
}

func authorizeForm() url.Values {
	return url.Values{"requestId": {"d16509f6-62ef-4902-bba1-912960e00898"}, "clientId": {DefaultEstateGuruClientID},
		"clientSecret": {DefaultEstateGuruClientSecret}, "redirectUrl": {"https://example.com/oauth/callback"}}
}

func TestEstateGuruAuthorize(t *testing.T) {
	s := start(t, Options{})
	a := estateGuruAuthorize(t, s, authorizeForm())
	if a.status != http.StatusOK {
		t.Fatalf("status = %d (%s)", a.status, a.body)
	}
	if got, want := string(a.fields["expires_in"]), "43199"; got != want {
		t.Errorf("expires_in = %s, want %s", got, want)
	}
	if got, want := a.str(t, "token_type"), "bearer"; got != want {
		t.Errorf("token_type = %q, want %q", got, want)
	}
	if got, want := a.str(t, "request_id"), "d16509f6-62ef-4902-bba1-912960e00898"; got != want {
		t.Errorf("request_id = %q, want %q", got, want)
	}
	if a.str(t, "access_token") == "" || a.str(t, "refresh_token") == "" {
		t.Errorf("tokens missing: %s", a.body)
	}

	bad := authorizeForm()
	bad.Set("clientSecret", "wrong")
	wantError(t, estateGuruAuthorize(t, s, bad), http.StatusUnauthorized, "Unauthorized")
	bad = authorizeForm()
	bad.Del("requestId")
	wantError(t, estateGuruAuthorize(t, s, bad), http.StatusBadRequest, "Errors")
}

func TestEstateGuruRotation(t *testing.T) {
	s := start(t, Options{})
	first := estateGuruAuthorize(t, s, authorizeForm())
	oldAccess, oldRefresh := first.str(t, "access_token"), first.str(t, "refresh_token")

	a := estateGuruRefresh(t, s, oldRefresh)
	if a.status != http.StatusOK {
		t.Fatalf("refresh status = %d (%s)", a.status, a.body)
	}
	newRefresh := a.str(t, "refresh_token")
	if newRefresh == "" || newRefresh == oldRefresh {
		t.Fatalf("refresh did not rotate: %q", newRefresh)
	}
	if got, want := string(a.fields["expires_in"]), "43199"; got != want {
		t.Errorf("expires_in = %s, want %s", got, want)
	}

	// The old refresh token is used up; presenting it again is reuse.
	b := estateGuruRefresh(t, s, oldRefresh)
	wantError(t, b, http.StatusBadRequest, "invalid_grant")
	if got, want := b.str(t, "error_description"), "Unable to verify given refresh_token"; got != want {
		t.Errorf("error_description = %q, want %q", got, want)
	}
	wantError(t, estateGuruRefresh(t, s, "deadbeef"), http.StatusBadRequest, "invalid_grant")
	st := s.Stats()
	if st.RefreshReuse != 1 || st.RefusedRefresh != 2 {
		t.Fatalf("RefreshReuse = %d, RefusedRefresh = %d, want 1 and 2", st.RefreshReuse, st.RefusedRefresh)
	}
	if got, want := s.RefreshUses(oldRefresh), 2; got != want {
		t.Fatalf("RefreshUses = %d, want %d", got, want)
	}

	// The old access token was superseded by the rotation.
	wantError(t, investments(t, s, oldAccess, "r1"), http.StatusUnauthorized, "invalid_token")
	if got := investments(t, s, a.str(t, "access_token"), "r1"); got.status != http.StatusOK {
		t.Fatalf("new access token: status %d (%s)", got.status, got.body)
	}
	if a := estateGuruRefresh(t, s, newRefresh); a.status != http.StatusOK {
		t.Fatalf("rotated token: status %d", a.status)
	}

	req, _ := http.NewRequest(http.MethodPost, s.EstateGuruURL+"/oauth/token", strings.NewReader("grant_type=refresh_token&refresh_token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DefaultEstateGuruClientID, "wrong")
	a = do(t, nil, req)
	wantError(t, a, http.StatusUnauthorized, "Unauthorized")
	if got, want := a.str(t, "error_description"), "Client credentials are invalid"; got != want {
		t.Errorf("error_description = %q, want %q", got, want)
	}

	s.RevokeAll(EstateGuru, testInvestor)
	tok := s.IssueEstateGuruRefreshToken(testInvestor)
	if a := estateGuruRefresh(t, s, tok); a.status != http.StatusOK {
		t.Fatalf("issued after RevokeAll: status %d", a.status)
	}
	if got, want := s.Stats().RefreshReuse, 1; got != want {
		t.Fatalf("RefreshReuse = %d, want %d", got, want)
	}
}

func TestEstateGuruInvestments(t *testing.T) {
	s := start(t, Options{})
	access := estateGuruRefresh(t, s, s.IssueEstateGuruRefreshToken(testInvestor)).str(t, "access_token")
	const ours = "d16509f6-62ef-4902-bba1-912960e00898"
	a := investments(t, s, access, ours)
	if a.status != http.StatusOK {
		t.Fatalf("status = %d (%s)", a.status, a.body)
	}
	rid := a.str(t, "requestId")
	if !strings.HasSuffix(rid, ours) || len(rid) != EstateGuruRequestIDPrefixLen+len(ours) {
		t.Fatalf("requestId = %q, want %d characters then %q", rid, EstateGuruRequestIDPrefixLen, ours)
	}
	if other := investments(t, s, access, ours).str(t, "requestId"); other == rid {
		t.Fatalf("requestId prefix is not random: %q twice", rid)
	}
	if got, want := a.str(t, "cash"), "48872900.14"; got != want {
		t.Fatalf("cash = %q, want %q", got, want)
	}
	var body struct {
		Investments []map[string]string `json:"investments"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"change": "0.00", "investment_amount": "10130.00", "market_value": "10130.00", "name": "#5XX Bridge loan (Estonia)",
		"principal_left": "10130.00", "profit": "0.00", "quantity": "3", "realized_income": "0.00",
		"resourcePath": s.EstateGuruURL + "/portal/investment/single/EE11111",
	}
	if len(body.Investments) != 1 || fmt.Sprint(body.Investments[0]) != fmt.Sprint(want) {
		t.Fatalf("investments = %v, want [%v]", body.Investments, want)
	}

	s.SetEstateGuruCash(testInvestor, "0.29")
	if got, want := investments(t, s, access, ours).str(t, "cash"), "0.29"; got != want {
		t.Fatalf("cash = %q, want %q", got, want)
	}
	wantError(t, investments(t, s, access, ""), http.StatusBadRequest, "Errors")
	wantError(t, investments(t, s, "nope", ours), http.StatusUnauthorized, "invalid_token")
	s.ExpireAccessTokens()
	wantError(t, investments(t, s, access, ours), http.StatusUnauthorized, "invalid_token")
	if got, want := s.Stats().DataRequests[string(EstateGuruInvestments)], 6; got != want {
		t.Fatalf("DataRequests = %d, want %d", got, want)
	}
}

func TestLargePortfolio(t *testing.T) {
	s := start(t, Options{})
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	inv := GenerateInvestor("big", n, 7)
	s.AddEstateGuruInvestor(inv)
	access := estateGuruRefresh(t, s, s.IssueEstateGuruRefreshToken("big")).str(t, "access_token")
	a := investments(t, s, access, "big-1")
	if a.status != http.StatusOK {
		t.Fatalf("status = %d", a.status)
	}
	if got, want := a.header.Get("Content-Length"), strconv.Itoa(len(a.body)); got != want {
		t.Fatalf("Content-Length = %s, body %s bytes", got, want)
	}
	var body struct {
		Investments []struct {
			Name             string `json:"name"`
			InvestmentAmount string `json:"investment_amount"`
			ResourcePath     string `json:"resourcePath"`
		} `json:"investments"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatal(err)
	}
	if got, want := len(body.Investments), n; got != want {
		t.Fatalf("investments = %d, want %d", got, want)
	}
	for i, want := range []string{"0.29", "1000000.01"} {
		if got := body.Investments[i].InvestmentAmount; got != want {
			t.Errorf("investment %d amount = %q, want %q", i, got, want)
		}
	}
	if got, want := body.Investments[2].Name, inv.Investments[2].Name; got != want {
		t.Errorf("name = %q, want %q", got, want)
	}
	seen := make(map[string]bool, len(body.Investments))
	for _, in := range body.Investments {
		if seen[in.ResourcePath] {
			t.Fatalf("resourcePath %q twice", in.ResourcePath)
		}
		seen[in.ResourcePath] = true
	}
}

func TestGenerateInvestorDeterministic(t *testing.T) {
	a, b := GenerateInvestor("x", 500, 42), GenerateInvestor("x", 500, 42)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("same seed, different investors")
	}
	if c := GenerateInvestor("x", 500, 43); fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("different seeds, same investor")
	}
	for _, in := range a.Investments {
		for _, v := range []string{in.InvestmentAmount, in.MarketValue, in.PrincipalLeft, in.Profit, in.RealizedIncome, in.Change} {
			i := strings.IndexByte(v, '.')
			if i < 1 || len(v)-i != 3 {
				t.Fatalf("amount %q is not a two-decimal string", v)
			}
		}
	}
}

func TestFaultCannedThenNormal(t *testing.T) {
	s := start(t, Options{})
	s.Inject(EverRealToken, Fault{Status: 500, Body: `{"error":"server_error"}`, Times: 2})
	s.Inject(EverRealToken, Fault{Status: 429, Body: `{"error":"too_many_requests"}`, Header: map[string]string{"Retry-After": "7", "X-RateLimit-Remaining": "0"}})
	s.Inject(EverRealToken, Fault{Status: 200, Body: "<html>maintenance</html>"})
	refresh := s.IssueEverRealRefreshToken(testEmail)
	for range 2 {
		wantError(t, everRealRefresh(t, s, refresh), 500, "server_error")
	}
	a := everRealRefresh(t, s, refresh)
	wantError(t, a, 429, "too_many_requests")
	if a.header.Get("Retry-After") != "7" || a.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("headers = %v", a.header)
	}
	a = everRealRefresh(t, s, refresh)
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") || a.header.Get("X-RateLimit-Limit") == "" {
		t.Fatalf("HTML fault: %d %v", a.status, a.header)
	}
	if a := everRealRefresh(t, s, refresh); a.status != http.StatusOK || a.str(t, "access_token") == "" {
		t.Fatalf("after the faults: %d %s", a.status, a.body)
	}
	if got, want := s.RefreshUses(refresh), 1; got != want {
		t.Fatalf("RefreshUses = %d, want %d (canned answers never reach the grant)", got, want)
	}
	if got, want := s.Stats().EverRealTokenRequests, 5; got != want {
		t.Fatalf("EverRealTokenRequests = %d, want %d", got, want)
	}
}

func TestFaultDropAfterProcessing(t *testing.T) {
	s := start(t, Options{})
	refresh := s.IssueEstateGuruRefreshToken(testInvestor)
	s.Inject(EstateGuruToken, Fault{DropAfterProcessing: true})

	req, _ := http.NewRequest(http.MethodPost, s.EstateGuruURL+"/oauth/token",
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DefaultEstateGuruClientID, DefaultEstateGuruClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer (%d), want a connection error", resp.StatusCode)
	}
	if !s.EstateGuruRefreshTokenUsed(refresh) {
		t.Fatal("the lost refresh did not rotate the token")
	}
	// The client still holds the old token: it is now refused, and counted.
	wantError(t, estateGuruRefresh(t, s, refresh), http.StatusBadRequest, "invalid_grant")
	if got, want := s.Stats().RefreshReuse, 1; got != want {
		t.Fatalf("RefreshReuse = %d, want %d", got, want)
	}
}

func TestFaultHangRespectsClientTimeout(t *testing.T) {
	s := start(t, Options{})
	s.Inject(EstateGuruInvestments, Fault{Hang: true})
	client := &http.Client{Timeout: 100 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodPost, s.EstateGuruURL+"/userInformation/userInvestments", strings.NewReader("requestId=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, err := client.Do(req)
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a client timeout", err)
	}
	// Normal behaviour resumes.
	wantError(t, investments(t, s, "nope", "x"), http.StatusUnauthorized, "invalid_token")
}

func TestFaultDelayAndLatencyHonourContext(t *testing.T) {
	s := start(t, Options{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.EverRealURL+"/accounts/api/users/me", nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}

	s2 := start(t, Options{})
	s2.Inject(EverRealMe, Fault{Delay: 20 * time.Millisecond})
	wantError(t, get(t, s2.EverRealURL+"/accounts/api/users/me", "x"), http.StatusUnauthorized, "invalid_token")
}

func TestFaultOversize(t *testing.T) {
	s := start(t, Options{})
	const n = 3<<20 + 17
	s.Inject(EstateGuruInvestments, Fault{Oversize: n})
	a := investments(t, s, "whatever", "x")
	if a.status != http.StatusOK {
		t.Fatalf("status = %d", a.status)
	}
	if got := len(a.body); got != n {
		t.Fatalf("body = %d bytes, want %d", got, n)
	}
	if !strings.HasPrefix(string(a.body), `{"investments":[`) || json.Valid(a.body) {
		t.Fatalf("filler is not JSON-ish: %.40s", a.body)
	}
}

func TestRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 30, 0, time.UTC)
	s := start(t, Options{RateLimit: 3, Now: func() time.Time { return now }})
	for i := range 3 {
		a := get(t, s.EverRealURL+"/accounts/api/users/me", "x")
		if got, want := a.header.Get("X-RateLimit-Remaining"), strconv.Itoa(2-i); got != want {
			t.Fatalf("X-RateLimit-Remaining = %q, want %q", got, want)
		}
	}
	a := get(t, s.EverRealURL+"/accounts/api/users/me", "x")
	wantError(t, a, http.StatusTooManyRequests, "too_many_requests")
	if got, want := a.header.Get("X-RateLimit-Reset"), "30"; got != want {
		t.Fatalf("X-RateLimit-Reset = %q, want %q", got, want)
	}
	if got, want := s.Stats().RateLimited, 1; got != want {
		t.Fatalf("RateLimited = %d, want %d", got, want)
	}
}

// Each EverReal host (tenant subdomain) has its own budget, and the
// accounts and tokens are shared.
func TestRateLimitPerHost(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 30, 0, time.UTC)
	s := start(t, Options{RateLimit: 2, EverRealHosts: 3, Now: func() time.Time { return now }})
	if got, want := len(s.EverRealURLs), 3; got != want {
		t.Fatalf("%d EverReal hosts, want %d", got, want)
	}
	if s.EverRealURLs[0] != s.EverRealURL {
		t.Fatalf("EverRealURLs[0] = %q, want EverRealURL %q", s.EverRealURLs[0], s.EverRealURL)
	}
	a := passwordGrant(t, s, testEmail, testPassword) // host 0: one of its two
	if a.status != http.StatusOK {
		t.Fatalf("password grant: %d %s", a.status, a.body)
	}
	access := a.str(t, "access_token")
	for _, u := range s.EverRealURLs[1:] {
		for i := range 2 {
			me := get(t, u+"/accounts/api/users/me", access)
			if me.status != http.StatusOK {
				t.Fatalf("%s request %d: status %d, want 200 (a token from another host works here)", u, i+1, me.status)
			}
			if got, want := me.header.Get("X-RateLimit-Remaining"), strconv.Itoa(1-i); got != want {
				t.Fatalf("%s: X-RateLimit-Remaining = %q, want %q", u, got, want)
			}
		}
		wantError(t, get(t, u+"/accounts/api/users/me", access), http.StatusTooManyRequests, "too_many_requests")
	}
	if me := get(t, s.EverRealURL+"/accounts/api/users/me", access); me.status != http.StatusOK {
		t.Fatalf("host 0's second request: status %d, want 200", me.status)
	}
	if got, want := s.Stats().RateLimited, 2; got != want {
		t.Fatalf("RateLimited = %d, want %d", got, want)
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	s := start(t, Options{})
	if a := get(t, s.EverRealURL+"/nope", ""); a.status != http.StatusNotFound {
		t.Fatalf("status = %d, want 404", a.status)
	}
	if a := get(t, s.EstateGuruURL+"/oauth/token", ""); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("status = %d, want 405", a.status)
	}
}

// TestConcurrent runs many clients at once; run with -race.
func TestConcurrent(t *testing.T) {
	s := start(t, Options{})
	const accounts = 40
	var wg sync.WaitGroup
	for i := range accounts {
		email, name := fmt.Sprintf("user%d@everreal.co", i), fmt.Sprintf("investor%d", i)
		s.AddEverRealUser(GenerateEverRealUser(email, int64(i)))
		s.AddEstateGuruInvestor(GenerateInvestor(name, 20, int64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			er := s.IssueEverRealRefreshToken(email)
			eg := s.IssueEstateGuruRefreshToken(name)
			for range 5 {
				a := everRealRefresh(t, s, er)
				if me := get(t, s.EverRealURL+"/accounts/api/users/me", a.str(t, "access_token")); me.status != 200 {
					t.Errorf("users/me: %d", me.status)
					return
				}
				b := estateGuruRefresh(t, s, eg)
				eg = b.str(t, "refresh_token")
				if inv := investments(t, s, b.str(t, "access_token"), "r"); inv.status != 200 {
					t.Errorf("userInvestments: %d", inv.status)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.RefreshReuse != 0 || st.RefusedRefresh != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if got, want := st.DataRequests[string(EstateGuruInvestments)], accounts*5; got != want {
		t.Fatalf("DataRequests = %d, want %d", got, want)
	}
}

func BenchmarkUserInvestments100k(b *testing.B) {
	s := start(b, Options{})
	s.AddEstateGuruInvestor(GenerateInvestor("big", 100_000, 1))
	access := estateGuruRefresh(b, s, s.IssueEstateGuruRefreshToken("big")).str(b, "access_token")
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, s.EstateGuruURL+"/userInformation/userInvestments", strings.NewReader("requestId=r"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.SetBytes(n)
	}
}

func BenchmarkEverRealRefreshAndMe(b *testing.B) {
	s := start(b, Options{})
	refresh := s.IssueEverRealRefreshToken(testEmail)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a := everRealRefresh(b, s, refresh)
			get(b, s.EverRealURL+"/accounts/api/users/me", a.str(b, "access_token"))
		}
	})
}

func TestLogNeverHoldsTokens(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	s := start(t, Options{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}})
	login := passwordGrant(t, s, testEmail, testPassword)
	access, refresh := login.str(t, "access_token"), login.str(t, "refresh_token")
	get(t, s.EverRealURL+"/accounts/api/tokeninfo?access_token="+url.QueryEscape(access), "")
	get(t, s.EverRealURL+"/accounts/api/tokenrevoke?token="+url.QueryEscape(refresh), "")
	eg := estateGuruAuthorize(t, s, authorizeForm())
	investments(t, s, eg.str(t, "access_token"), "r")

	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 5 {
		t.Fatalf("%d log lines, want 5: %q", len(lines), lines)
	}
	for _, l := range lines {
		for _, secret := range []string{access, refresh, eg.str(t, "access_token"), eg.str(t, "refresh_token"),
			DefaultEverRealClientSecret, DefaultEstateGuruClientSecret, testPassword} {
			if strings.Contains(l, secret) {
				t.Fatalf("log line %q holds a secret", l)
			}
		}
	}
}

func TestCloseCutsHungRequests(t *testing.T) {
	s := start(t, Options{})
	s.Inject(EverRealMe, Fault{Hang: true})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.EverRealURL + "/accounts/api/users/me")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for s.Stats().DataRequests[string(EverRealMe)] == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a hung request got an answer after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close left the request hanging")
	}
}
