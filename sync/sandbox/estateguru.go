package sandbox

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Investor is an EstateGuru account.
type Investor struct {
	Name        string
	Currency    string // empty: "EUR"
	Cash        string // a decimal string, e.g. "48872900.14"; empty: "0.00"
	Investments []Investment
}

// Investment is one line of userInvestments. The money fields are decimal
// strings, served exactly as given.
type Investment struct {
	Name, Quantity, InvestmentAmount, MarketValue, PrincipalLeft, Profit, RealizedIncome, Change string
	// LoanID ends the resourcePath: {EstateGuruURL}/portal/investment/single/{LoanID}.
	// Empty: "SB" and the investment's position from 1.
	LoanID string
}

type egInvestor struct {
	currency string
	cash     string
	invJSON  []byte // the "investments" array, encoded once
	count    int
}

type egRefresh struct {
	name    string
	seq     uint64
	used    bool   // rotated: presenting it again is reuse
	access  string // the access token issued with it, superseded when it rotates
	revoked bool
}

type egAccess struct {
	name       string
	exp        time.Time
	seq        uint64
	superseded bool
}

// AddEstateGuruInvestor adds the investor, or replaces the one with the same
// name. The investments are encoded once here, so even 100,000 of them are
// served as fast as the connection takes them.
func (s *Sandbox) AddEstateGuruInvestor(inv Investor) {
	st := &egInvestor{currency: inv.Currency, cash: inv.Cash, count: len(inv.Investments)}
	if st.currency == "" {
		st.currency = "EUR"
	}
	if st.cash == "" {
		st.cash = "0.00"
	}
	st.invJSON = encodeInvestments(inv.Investments, s.EstateGuruURL+"/portal/investment/single/")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.egInvestors[inv.Name]; !ok {
		s.egOrder = append(s.egOrder, inv.Name)
	}
	s.egInvestors[inv.Name] = st
}

// SetEstateGuruCash changes the investor's cash from now on.
func (s *Sandbox) SetEstateGuruCash(name, cash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.egInvestors[name]; ok {
		st := *old
		st.cash = cash
		s.egInvestors[name] = &st
	}
}

// IssueEstateGuruRefreshToken issues a refresh token for the investor, as an
// authorization would, without an access token.
func (s *Sandbox) IssueEstateGuruRefreshToken(name string) string {
	tok := randomHex(28)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.egRefresh[tok] = &egRefresh{name: name, seq: s.nextSeq()}
	return tok
}

func (s *Sandbox) estateGuruMux() *http.ServeMux {
	mux := http.NewServeMux()
	s.handle(mux, "/api/oauth/authorize", route{EstateGuruAuthorize, false, []string{http.MethodPost}, s.egAuthorize})
	s.handle(mux, "/oauth/token", route{EstateGuruToken, false, []string{http.MethodPost}, s.egToken})
	s.handle(mux, "/userInformation/userInvestments", route{EstateGuruInvestments, false, []string{http.MethodPost}, s.egInvestments})
	mux.HandleFunc("/", notFound)
	return mux
}

// egTokenAnswer is the authorize and refresh answer. request_id echoes the
// requestId when one was sent.
type egTokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	RequestID    string `json:"request_id,omitempty"`
}

func egValidation(w http.ResponseWriter, desc string) {
	writeJSON(w, http.StatusBadRequest, errorBody{Error: "Errors", Description: desc})
}

func egUnauthorized(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, errorBody{Error: "Unauthorized", Description: "Client credentials are invalid"})
}

// egIssue issues an access and refresh token pair for the investor. Callers
// hold s.mu.
func (s *Sandbox) egIssue(name string, now time.Time) egTokenAnswer {
	ans := egTokenAnswer{
		AccessToken:  randomHex(27),
		TokenType:    "bearer",
		ExpiresIn:    expiresIn(s.egAccessTTL),
		RefreshToken: randomHex(28),
	}
	s.egAccess[ans.AccessToken] = &egAccess{name: name, exp: now.Add(s.egAccessTTL), seq: s.nextSeq()}
	s.egRefresh[ans.RefreshToken] = &egRefresh{name: name, seq: s.nextSeq(), access: ans.AccessToken}
	return ans
}

// egAuthorize is the seed's authorize call: client credentials in the form,
// an immediate token answer for the investor named by the extra form field
// "investor", or else the first investor.
func (s *Sandbox) egAuthorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		egValidation(w, "the body must be a form")
		return
	}
	reqID := r.FormValue("requestId")
	clientID, secret := r.FormValue("clientId"), r.FormValue("clientSecret")
	switch {
	case clientID == "" || secret == "":
		egValidation(w, "clientId and clientSecret are required")
		return
	case !secretEqual(clientID, s.opts.EstateGuruClientID) || !secretEqual(secret, s.opts.EstateGuruClientSecret):
		egUnauthorized(w)
		return
	case reqID == "":
		egValidation(w, "requestId is required")
		return
	}
	now := s.now()
	s.mu.Lock()
	name := r.FormValue("investor")
	if name == "" && len(s.egOrder) > 0 {
		name = s.egOrder[0]
	}
	if _, ok := s.egInvestors[name]; !ok {
		s.mu.Unlock()
		egValidation(w, "no such investor")
		return
	}
	ans := s.egIssue(name, now)
	s.mu.Unlock()
	ans.RequestID = reqID
	writeJSON(w, http.StatusOK, ans)
}

// egToken is the refresh grant. It rotates: the presented refresh token is
// used up and its access token superseded.
func (s *Sandbox) egToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	id, secret, ok := r.BasicAuth()
	if !ok || !secretEqual(id, s.opts.EstateGuruClientID) || !secretEqual(secret, s.opts.EstateGuruClientSecret) {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth2/client"`)
		egUnauthorized(w)
		return
	}
	if err := r.ParseForm(); err != nil {
		egValidation(w, "the body must be a form")
		return
	}
	if gt := r.PostFormValue("grant_type"); gt != "refresh_token" {
		egValidation(w, "grant_type must be refresh_token")
		return
	}
	tok := r.PostFormValue("refresh_token")
	if tok == "" {
		egValidation(w, "refresh_token is required")
		return
	}
	now := s.now()
	s.mu.Lock()
	s.refreshUses[tok]++
	rt, ok := s.egRefresh[tok]
	_, investorOK := s.egInvestors[rtName(rt)]
	if !ok || rt.used || rt.revoked || !s.live(EstateGuru, rt.name, rt.seq) || !investorOK {
		if ok && rt.used {
			s.refreshReuse++
		}
		s.refusedRefresh++
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_grant", Description: "Unable to verify given refresh_token"})
		return
	}
	rt.used = true
	if a, ok := s.egAccess[rt.access]; ok {
		a.superseded = true
	}
	ans := s.egIssue(rt.name, now)
	s.mu.Unlock()
	ans.RequestID = r.FormValue("requestId")
	writeJSON(w, http.StatusOK, ans)
}

func rtName(rt *egRefresh) string {
	if rt == nil {
		return ""
	}
	return rt.name
}

// egInvestments is userInvestments. The body is the prefix, the investments
// encoded when the investor was added, and a closing brace.
func (s *Sandbox) egInvestments(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	now := s.now()
	tok := bearer(r)
	s.mu.Lock()
	a, ok := s.egAccess[tok]
	var inv *egInvestor
	if ok {
		inv = s.egInvestors[a.name]
	}
	valid := ok && inv != nil && !a.superseded && a.seq > s.accessEpoch && s.live(EstateGuru, a.name, a.seq) && now.Before(a.exp)
	s.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="Unable to verify given access token"`)
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "invalid_token", Description: "Unable to verify given access token"})
		return
	}
	if err := r.ParseForm(); err != nil {
		egValidation(w, "the body must be a form")
		return
	}
	reqID := r.FormValue("requestId")
	if reqID == "" {
		egValidation(w, "requestId is required")
		return
	}
	prefix := make([]byte, 0, 256)
	prefix = append(prefix, `{"requestId":`...)
	prefix = appendJSONString(prefix, uuid.NewString()[:EstateGuruRequestIDPrefixLen]+reqID)
	prefix = append(prefix, `,"currency":`...)
	prefix = appendJSONString(prefix, inv.currency)
	prefix = append(prefix, `,"cash":`...)
	prefix = appendJSONString(prefix, inv.cash)
	prefix = append(prefix, `,"investments":`...)
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(prefix)+len(inv.invJSON)+1))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(prefix); err != nil {
		return
	}
	if _, err := w.Write(inv.invJSON); err != nil {
		return
	}
	w.Write([]byte("}"))
}

// encodeInvestments encodes the investments array in the seed's field order.
func encodeInvestments(invs []Investment, pathBase string) []byte {
	b := make([]byte, 0, 2+len(invs)*300)
	b = append(b, '[')
	for i, in := range invs {
		if i > 0 {
			b = append(b, ',')
		}
		loan := in.LoanID
		if loan == "" {
			loan = "SB" + strconv.Itoa(i+1)
		}
		b = append(b, `{"change":`...)
		b = appendJSONString(b, in.Change)
		b = append(b, `,"investment_amount":`...)
		b = appendJSONString(b, in.InvestmentAmount)
		b = append(b, `,"market_value":`...)
		b = appendJSONString(b, in.MarketValue)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, in.Name)
		b = append(b, `,"principal_left":`...)
		b = appendJSONString(b, in.PrincipalLeft)
		b = append(b, `,"profit":`...)
		b = appendJSONString(b, in.Profit)
		b = append(b, `,"quantity":`...)
		b = appendJSONString(b, in.Quantity)
		b = append(b, `,"realized_income":`...)
		b = appendJSONString(b, in.RealizedIncome)
		b = append(b, `,"resourcePath":`...)
		b = appendJSONString(b, pathBase+url.PathEscape(loan))
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string: plain ASCII directly, anything
// else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s)
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// EstateGuruRefreshTokenUsed reports whether a refresh token was rotated
// (presenting it again is reuse).
func (s *Sandbox) EstateGuruRefreshTokenUsed(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.egRefresh[token]
	return ok && rt.used
}
