package sandbox

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// EverRealUser is an EverReal account. Empty fields get sandbox defaults
// when added: a random ID, language "en-US", a company and partner, and the
// scopes of the seed's example.
type EverRealUser struct {
	Email, Password                          string
	FirstName, LastName                      string // empty: null in users/me
	Language                                 string
	CompanyID, CompanyName                   string // the current company
	PartnerID, PartnerName, PartnerSubdomain string
	ID                                       string // a UUID; generated if empty
	Companies                                []Company
	Scopes                                   []string
	IsTenant                                 bool
}

// Company is one of an EverReal user's companies.
type Company struct {
	ID, Name  string
	IsDefault bool
}

// DefaultEverRealScopes are the scopes users/me reports for a user added
// without any (the seed's example).
var DefaultEverRealScopes = []string{
	"offline_access",
	"company_contracting_edit_contract",
	"message_templates_all",
	"company_portfolio_all",
	"company_user",
	"email_templates_all",
}

type erUser struct {
	u         EverRealUser
	createdAt time.Time
	updatedAt time.Time
}

type erRefresh struct {
	email   string
	exp     time.Time
	seq     uint64
	revoked bool
}

type erAccess struct {
	email   string
	exp     time.Time
	seq     uint64
	revoked bool
}

type erCode struct {
	email       string
	redirectURI string
	challenge   string
	scope       string
	exp         time.Time
	used        bool
	refresh     string // the refresh token the exchange issued, revoked if the code is replayed
}

// AddEverRealUser adds the user, or replaces the one with the same email.
// Password grants check Password.
func (s *Sandbox) AddEverRealUser(u EverRealUser) {
	u.Companies = slices.Clone(u.Companies)
	u.Scopes = slices.Clone(u.Scopes)
	if u.ID == "" {
		u.ID = uuid.NewString()
	}
	if u.Language == "" {
		u.Language = "en-US"
	}
	if u.CompanyID == "" {
		for _, c := range u.Companies {
			if c.IsDefault {
				u.CompanyID, u.CompanyName = c.ID, c.Name
				break
			}
		}
	}
	if u.CompanyID == "" && len(u.Companies) > 0 {
		u.CompanyID, u.CompanyName = u.Companies[0].ID, u.Companies[0].Name
	}
	if u.CompanyID == "" {
		u.CompanyID = uuid.NewString()
	}
	if u.CompanyName == "" {
		u.CompanyName = "sandbox-company"
	}
	if u.PartnerID == "" {
		u.PartnerID = uuid.NewString()
	}
	if u.PartnerName == "" {
		u.PartnerName = "sandbox"
	}
	if u.PartnerSubdomain == "" {
		u.PartnerSubdomain = "sandbox"
	}
	if len(u.Companies) == 0 {
		u.Companies = []Company{{ID: u.CompanyID, Name: u.CompanyName, IsDefault: true}}
	}
	if u.Scopes == nil {
		u.Scopes = slices.Clone(DefaultEverRealScopes)
	}
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.erUsers[u.Email]; ok {
		s.erUsers[u.Email] = &erUser{u: u, createdAt: old.createdAt, updatedAt: now}
		return
	}
	s.erUsers[u.Email] = &erUser{u: u, createdAt: now, updatedAt: now}
	s.erOrder = append(s.erOrder, u.Email)
}

// SetEverRealScopes changes the scopes users/me reports from now on.
func (s *Sandbox) SetEverRealScopes(email string, scopes []string) {
	scopes = slices.Clone(scopes)
	if scopes == nil {
		scopes = []string{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if eu, ok := s.erUsers[email]; ok {
		u := eu.u
		u.Scopes = scopes
		s.erUsers[email] = &erUser{u: u, createdAt: eu.createdAt, updatedAt: s.now().UTC()}
	}
}

// IssueEverRealRefreshToken issues a refresh JWT for the user, for the
// sandbox's client, as a password grant would (it counts toward the 50 per
// client and user). It lives Options.RefreshTTL.
func (s *Sandbox) IssueEverRealRefreshToken(email string) string {
	return s.IssueEverRealRefreshTokenExpiring(email, s.now().Add(s.refreshTTL))
}

// IssueEverRealRefreshTokenExpiring issues a refresh JWT whose exp (and real
// lifetime) is exp.
func (s *Sandbox) IssueEverRealRefreshTokenExpiring(email string, exp time.Time) string {
	now := s.now()
	sub := s.everRealSubject(email)
	tok := everRealJWT(sub, now, exp)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeEverRealRefresh(tok, email, exp)
	return tok
}

// EverRealRefreshTokenCount says how many refresh tokens of the user are
// stored (at most 50): issued, not evicted, not revoked.
func (s *Sandbox) EverRealRefreshTokenCount(email string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.erRefreshList[email])
}

func (s *Sandbox) everRealSubject(email string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if eu, ok := s.erUsers[email]; ok {
		return eu.u.ID
	}
	return uuid.NewString()
}

// storeEverRealRefresh records a refresh token and evicts the user's oldest
// past 50. Callers hold s.mu.
func (s *Sandbox) storeEverRealRefresh(tok, email string, exp time.Time) {
	s.erRefresh[tok] = &erRefresh{email: email, exp: exp, seq: s.nextSeq()}
	list := append(s.erRefreshList[email], tok)
	for len(list) > EverRealMaxRefreshTokens {
		delete(s.erRefresh, list[0])
		list[0] = ""
		list = list[1:]
		s.evicted++
	}
	s.erRefreshList[email] = list
}

// storeEverRealAccess records an access token. Callers hold s.mu.
func (s *Sandbox) storeEverRealAccess(tok, email string, exp time.Time) {
	s.erAccess[tok] = &erAccess{email: email, exp: exp, seq: s.nextSeq()}
}

// everRealAccessOK returns the user behind a valid access token. Callers
// hold s.mu.
func (s *Sandbox) everRealAccessOK(tok string, now time.Time) (*erAccess, *erUser, bool) {
	a, ok := s.erAccess[tok]
	if !ok || a.revoked || a.seq <= s.accessEpoch || !s.live(EverReal, a.email, a.seq) || !now.Before(a.exp) {
		return nil, nil, false
	}
	eu, ok := s.erUsers[a.email]
	if !ok {
		return nil, nil, false
	}
	return a, eu, true
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))

// everRealJWT returns a token shaped like EverReal's: an RS256 JWT whose
// payload is {"jti","sub","exp","iat"}. The signature is random bytes.
func everRealJWT(sub string, iat, exp time.Time) string {
	payload, _ := json.Marshal(struct {
		JTI string `json:"jti"`
		Sub string `json:"sub"`
		Exp int64  `json:"exp"`
		Iat int64  `json:"iat"`
	}{uuid.NewString(), sub, exp.Unix(), iat.Unix()})
	var sig [256]byte
	crand.Read(sig[:])
	return jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sig[:])
}

func (s *Sandbox) everRealMux() *http.ServeMux {
	mux := http.NewServeMux()
	s.handle(mux, "/accounts/oauth/token", route{EverRealToken, true, []string{http.MethodPost}, s.erToken})
	s.handle(mux, "/accounts/dialog/authorize", route{EverRealAuthorize, true, []string{http.MethodGet}, s.erAuthorize})
	s.handle(mux, "/accounts/api/users/me", route{EverRealMe, true, []string{http.MethodGet}, s.erMe})
	s.handle(mux, "/accounts/api/userinfo", route{EverRealUserInfo, true, []string{http.MethodGet}, s.erMe})
	s.handle(mux, "/accounts/api/tokeninfo", route{EverRealTokenInfo, true, []string{http.MethodGet, http.MethodPost}, s.erTokenInfo})
	s.handle(mux, "/accounts/api/tokenrevoke", route{EverRealRevoke, true, []string{http.MethodGet, http.MethodPost}, s.erRevoke})
	mux.HandleFunc("/", notFound)
	return mux
}

type erTokenRequest struct {
	GrantType    string `json:"grant_type"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	CodeVerifier string `json:"code_verifier"`
}

// erLoginAnswer is the password (and authorization code) grant's answer:
// expires_in is a number.
type erLoginAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	TokenType    string `json:"token_type"`
}

// erRefreshAnswer is the refresh grant's answer, as the seed shows it:
// expires_in is a string and there is no refresh_token.
type erRefreshAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   string `json:"expires_in"`
}

func readJSONBody(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errNotJSON
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errNotJSON
	}
	return nil
}

func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (s *Sandbox) erToken(w http.ResponseWriter, r *http.Request) {
	var req erTokenRequest
	if err := readJSONBody(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Description: err.Error()})
		return
	}
	switch req.GrantType {
	case "password", "refresh_token", "authorization_code":
	default:
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "unsupported_grant_type", Description: "grant_type must be password, refresh_token or authorization_code"})
		return
	}
	if !secretEqual(req.ClientID, s.opts.EverRealClientID) || !secretEqual(req.ClientSecret, s.opts.EverRealClientSecret) {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "invalid_client", Description: "client authentication failed"})
		return
	}
	switch req.GrantType {
	case "password":
		s.erPasswordGrant(w, req)
	case "refresh_token":
		s.erRefreshGrant(w, req)
	case "authorization_code":
		s.erCodeGrant(w, req)
	}
}

func (s *Sandbox) erPasswordGrant(w http.ResponseWriter, req erTokenRequest) {
	if req.Scope != "offline_access *" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_scope", Description: `scope must be "offline_access *"`})
		return
	}
	now := s.now()
	s.mu.Lock()
	eu, ok := s.erUsers[req.Username]
	s.mu.Unlock()
	if !ok || req.Username == "" || !secretEqual(req.Password, eu.u.Password) {
		writeJSON(w, http.StatusForbidden, errorBody{Error: "invalid_grant", Description: "heimdall.validation.user.does.not.exist"})
		return
	}
	writeJSON(w, http.StatusOK, s.erLogin(req.Username, eu.u.ID, now, true))
}

// erLogin issues an access token and, if withRefresh, a refresh token.
func (s *Sandbox) erLogin(email, sub string, now time.Time, withRefresh bool) erLoginAnswer {
	accessExp := now.Add(s.erAccessTTL)
	ans := erLoginAnswer{
		AccessToken: everRealJWT(sub, now, accessExp),
		ExpiresIn:   expiresIn(s.erAccessTTL),
		TokenType:   "Bearer",
	}
	refreshExp := now.Add(s.refreshTTL)
	if withRefresh {
		ans.RefreshToken = everRealJWT(sub, now, refreshExp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeEverRealAccess(ans.AccessToken, email, accessExp)
	if withRefresh {
		s.storeEverRealRefresh(ans.RefreshToken, email, refreshExp)
	}
	return ans
}

func (s *Sandbox) erRefreshGrant(w http.ResponseWriter, req erTokenRequest) {
	now := s.now()
	s.mu.Lock()
	if req.RefreshToken != "" {
		s.refreshUses[req.RefreshToken]++
	}
	rt, ok := s.erRefresh[req.RefreshToken]
	var eu *erUser
	if ok {
		eu = s.erUsers[rt.email]
	}
	if !ok || rt.revoked || !s.live(EverReal, rt.email, rt.seq) || !now.Before(rt.exp) || eu == nil {
		s.refusedRefresh++
		s.mu.Unlock()
		writeJSON(w, http.StatusForbidden, errorBody{Error: "invalid_grant", Description: "invalid refresh token"})
		return
	}
	email, sub := rt.email, eu.u.ID
	s.mu.Unlock()

	accessExp := now.Add(s.erAccessTTL)
	tok := everRealJWT(sub, now, accessExp)
	s.mu.Lock()
	s.storeEverRealAccess(tok, email, accessExp)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, erRefreshAnswer{AccessToken: tok, ExpiresIn: itoa(expiresIn(s.erAccessTTL))})
}

func (s *Sandbox) erCodeGrant(w http.ResponseWriter, req erTokenRequest) {
	now := s.now()
	refuse := func(desc string) {
		writeJSON(w, http.StatusForbidden, errorBody{Error: "invalid_grant", Description: desc})
	}
	s.mu.Lock()
	c, ok := s.erCodes[req.Code]
	switch {
	case !ok || req.Code == "":
		s.mu.Unlock()
		refuse("invalid authorization code")
		return
	case c.used:
		// RFC 6749 4.1.2: a replayed code revokes what it issued.
		if rt, ok := s.erRefresh[c.refresh]; ok && !rt.revoked {
			rt.revoked = true
			s.dropFromList(rt.email, c.refresh)
		}
		s.mu.Unlock()
		refuse("authorization code already used")
		return
	case !now.Before(c.exp):
		s.mu.Unlock()
		refuse("authorization code expired")
		return
	case req.RedirectURI != c.redirectURI:
		s.mu.Unlock()
		refuse("redirect_uri does not match the authorization request")
		return
	case !pkceOK(req.CodeVerifier, c.challenge):
		s.mu.Unlock()
		refuse("code_verifier does not match the code_challenge")
		return
	}
	c.used = true
	eu, ok := s.erUsers[c.email]
	s.mu.Unlock()
	if !ok {
		refuse("heimdall.validation.user.does.not.exist")
		return
	}
	ans := s.erLogin(c.email, eu.u.ID, now, hasScope(c.scope, "offline_access"))
	s.mu.Lock()
	c.refresh = ans.RefreshToken
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, ans)
}

func hasScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

// pkceOK checks an RFC 7636 S256 verifier against its challenge.
func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 || challenge == "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return secretEqual(base64.RawURLEncoding.EncodeToString(sum[:]), challenge)
}

// dropFromList removes a refresh token from the user's list of stored ones.
// Callers hold s.mu.
func (s *Sandbox) dropFromList(email, tok string) {
	list := s.erRefreshList[email]
	if i := slices.Index(list, tok); i >= 0 {
		s.erRefreshList[email] = slices.Delete(list, i, i+1)
	}
}

// erAuthorize is the authorization endpoint of the code flow. The sandbox
// approves at once, as the user named by login_hint or else the first user,
// and redirects to redirect_uri with code and state.
func (s *Sandbox) erAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !secretEqual(q.Get("client_id"), s.opts.EverRealClientID) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_client", Description: "unknown client_id"})
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !redirect.IsAbs() || redirect.Host == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Description: "redirect_uri must be an absolute URL"})
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		v := redirect.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if state != "" {
			v.Set("state", state)
		}
		redirect.RawQuery = v.Encode()
		http.Redirect(w, r, redirect.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "code_challenge is required (PKCE)")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	}
	scope := q.Get("scope")
	if scope == "" {
		scope = "offline_access *"
	}
	code := randomHex(20)
	s.mu.Lock()
	email := q.Get("login_hint")
	if email == "" && len(s.erOrder) > 0 {
		email = s.erOrder[0]
	}
	_, ok := s.erUsers[email]
	if ok {
		s.erCodes[code] = &erCode{
			email:       email,
			redirectURI: q.Get("redirect_uri"),
			challenge:   q.Get("code_challenge"),
			scope:       scope,
			exp:         s.now().Add(10 * time.Minute),
		}
	}
	s.mu.Unlock()
	if !ok {
		fail("access_denied", "no such user")
		return
	}
	v := redirect.Query()
	v.Set("code", code)
	if state != "" {
		v.Set("state", state)
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

type erCompanyJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	IsDefault bool   `json:"isDefault"`
}

type erPartnerJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Subdomain string `json:"subdomain"`
}

type erCurrentCompanyJSON struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Partner   erPartnerJSON `json:"partner"`
	IsDefault bool          `json:"isDefault"`
}

type erTokenInfoJSON struct {
	Audience  string   `json:"audience"`
	Scope     []string `json:"scope"`
	UserID    string   `json:"user_id"`
	ExpiresIn int64    `json:"expires_in"`
}

// erMeJSON is users/me exactly as the seed shows it.
type erMeJSON struct {
	ID           string  `json:"id"`
	Email        string  `json:"email"`
	IsActive     bool    `json:"isActive"`
	FirstName    *string `json:"firstName"`
	LastName     *string `json:"lastName"`
	ProfilePhoto *string `json:"profilePhoto"`
	ProfileData  struct {
		Language string `json:"language"`
	} `json:"profileData"`
	IsTenant         bool                 `json:"isTenant"`
	CreatedAt        string               `json:"createdAt"`
	UpdatedAt        string               `json:"updatedAt"`
	AreTermsAccepted bool                 `json:"areTermsAccepted"`
	Companies        []erCompanyJSON      `json:"companies"`
	CurrentCompany   erCurrentCompanyJSON `json:"currentCompany"`
	TokenInfo        erTokenInfoJSON      `json:"tokenInfo"`
}

const jsTime = "2006-01-02T15:04:05.000Z"

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Sandbox) tokenInfo(a *erAccess, u *EverRealUser, now time.Time) erTokenInfoJSON {
	return erTokenInfoJSON{
		Audience:  s.opts.EverRealClientID,
		Scope:     slices.Clone(u.Scopes),
		UserID:    u.ID,
		ExpiresIn: max(0, int64(a.exp.Sub(now)/time.Second)),
	}
}

func invalidToken(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, errorBody{Error: "invalid_token", Description: "invalid or expired access token"})
}

// erMe answers users/me (and userinfo, which the sandbox answers alike).
func (s *Sandbox) erMe(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	s.mu.Lock()
	a, eu, ok := s.everRealAccessOK(bearer(r), now)
	s.mu.Unlock()
	if !ok {
		invalidToken(w)
		return
	}
	u := &eu.u
	me := erMeJSON{
		ID:               u.ID,
		Email:            u.Email,
		IsActive:         true,
		FirstName:        nullable(u.FirstName),
		LastName:         nullable(u.LastName),
		IsTenant:         u.IsTenant,
		CreatedAt:        eu.createdAt.Format(jsTime),
		UpdatedAt:        eu.updatedAt.Format(jsTime),
		AreTermsAccepted: true,
		Companies:        make([]erCompanyJSON, 0, len(u.Companies)),
		CurrentCompany: erCurrentCompanyJSON{
			ID:   u.CompanyID,
			Name: u.CompanyName,
			Partner: erPartnerJSON{
				ID:        u.PartnerID,
				Name:      u.PartnerName,
				Subdomain: u.PartnerSubdomain,
			},
		},
		TokenInfo: s.tokenInfo(a, u, now),
	}
	me.ProfileData.Language = u.Language
	for _, c := range u.Companies {
		me.Companies = append(me.Companies, erCompanyJSON{ID: c.ID, Name: c.Name, IsDefault: c.IsDefault})
		if c.ID == u.CompanyID {
			me.CurrentCompany.IsDefault = c.IsDefault
		}
	}
	writeJSON(w, http.StatusOK, me)
}

func (s *Sandbox) erTokenInfo(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	s.mu.Lock()
	a, eu, ok := s.everRealAccessOK(r.FormValue("access_token"), now)
	s.mu.Unlock()
	if !ok {
		invalidToken(w)
		return
	}
	writeJSON(w, http.StatusOK, s.tokenInfo(a, &eu.u, now))
}

// erRevoke revokes a refresh or access token. Like RFC 7009, it answers 200
// whether or not the token was known.
func (s *Sandbox) erRevoke(w http.ResponseWriter, r *http.Request) {
	tok := r.FormValue("token")
	if tok == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_request", Description: "token is required"})
		return
	}
	s.mu.Lock()
	if rt, ok := s.erRefresh[tok]; ok && !rt.revoked {
		rt.revoked = true
		s.dropFromList(rt.email, tok)
		s.revoked++
	} else if at, ok := s.erAccess[tok]; ok && !at.revoked {
		at.revoked = true
		s.revoked++
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct{}{})
}
