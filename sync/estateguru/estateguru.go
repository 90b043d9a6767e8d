// Package estateguru is the HTTP client for EstateGuru Connect: the
// authorize call, the refresh grant and the investor's portfolio
// (userInformation/userInvestments). It knows nothing of storage; every call
// goes through provider.HTTP and every failure is a *provider.Error with
// Provider "estateguru" and Op "authorize", "refresh" or "userInvestments".
//
// EstateGuru's quirks, from its own Connect (OAUTH2) document, are handled
// here: grants and data calls take form bodies; every answer echoes the
// caller's request id, possibly with a prefix prepended; money arrives as
// decimal strings and is parsed exactly; and errors are classified by their
// body's code before their status, a bare 403 being a rate limit.
package estateguru

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/syncerhq/syncer/sync/provider"

	"github.com/google/uuid"
)

// Name is the provider's name in errors, logs and the database.
const Name = "estateguru"

// DefaultBaseURL is EstateGuru's production site.
const DefaultBaseURL = "https://estateguru.co"

// The operations, as they appear in errors.
const (
	opAuthorize   = "authorize"
	opRefresh     = "refresh"
	opInvestments = "userInvestments"
)

// maxExpiresIn caps a stated token lifetime. A larger one is surely a
// mistake (and would overflow time.Duration); capping only means refreshing
// sooner than needed, never using a dead token longer.
const maxExpiresIn provider.ExpiresIn = 366 * 24 * 3600

// Client talks to EstateGuru. The zero value works against DefaultBaseURL
// once ClientID and ClientSecret are set (the data call needs neither).
type Client struct {
	BaseURL      string // DefaultBaseURL when empty; a trailing slash is fine
	ClientID     string
	ClientSecret provider.Secret
	HTTP         *provider.HTTP   // nil: a zero provider.HTTP (no retries, no limit)
	Now          func() time.Time // nil: time.Now
	NewRequestID func() string    // nil: a random UUID v4
}

// Authorization is the outcome of Authorize: either a Token (the provider
// answered with tokens at once) or RedirectTo, an address the person must
// open to grant access, after which the tokens arrive at the redirect URL
// (see ParseCallback, with RequestID).
type Authorization struct {
	RequestID  string // the id we sent; answers and callbacks must carry it
	Token      provider.Token
	RedirectTo string
}

// Authorize makes the documented authorize call: POST
// {base}/api/oauth/authorize with the form fields requestId, clientId,
// clientSecret and redirectUrl (left out when redirectURL is ""). It is sent
// once, never retried.
//
// A JSON answer with access_token gives the Token (its request_id must be
// ours, or end with ours: EstateGuru prepends a prefix). A redirect (3xx with
// Location), or a JSON answer with no token but a URL (redirectUrl, url,
// location...), gives RedirectTo instead. A redirect that already carries the
// tokens (or an error) in its query or fragment is read as the callback
// would be, so a token never travels through RedirectTo.
func (c *Client) Authorize(ctx context.Context, redirectURL string) (*Authorization, error) {
	if err := c.needCredentials(opAuthorize); err != nil {
		return nil, err
	}
	reqID, err := c.requestID(opAuthorize)
	if err != nil {
		return nil, err
	}
	endpoint := c.endpoint("/api/oauth/authorize")
	form := url.Values{}
	form.Set("requestId", reqID)
	form.Set("clientId", c.ClientID)
	form.Set("clientSecret", c.ClientSecret.Reveal())
	if redirectURL != "" {
		form.Set("redirectUrl", redirectURL)
	}
	now := c.now()
	var location string
	resp, err := c.policy(&location).Do(ctx, provider.Request{
		Provider: Name,
		Op:       opAuthorize,
		NoRetry:  true,
		MaxBody:  provider.MaxTokenBody,
		New:      formRequest(endpoint, form, nil),
	})
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) && pe.Status >= 300 && pe.Status < 400 && location != "" {
			a, err := c.fromRedirect(location, reqID, now)
			return a, scrub(err, c.ClientSecret.Reveal())
		}
		return nil, scrub(adjust(opAuthorize, err), c.ClientSecret.Reveal())
	}
	a, err := decodeAuthorize(resp, reqID, redirectURL, endpoint, now)
	if err != nil {
		return nil, scrub(err, c.ClientSecret.Reveal())
	}
	if a.RedirectTo != "" {
		a, err := c.fromRedirect(a.RedirectTo, reqID, now)
		return a, scrub(err, c.ClientSecret.Reveal())
	}
	return a, nil
}

// fromRedirect turns the address the provider sent the person to into an
// Authorization: the tokens, when the address already carries them (or the
// error, when it carries one), otherwise RedirectTo.
func (c *Client) fromRedirect(loc, reqID string, now time.Time) (*Authorization, error) {
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &provider.Error{Provider: Name, Op: opAuthorize, Kind: provider.KindBadAnswer,
			Err: errors.New("the address to send the person to is not an http(s) URL")}
	}
	for _, raw := range []string{u.RawQuery, u.Fragment} {
		q, err := url.ParseQuery(raw)
		if err != nil {
			continue
		}
		if q.Get("access_token") != "" || q.Get("error") != "" {
			tok, err := c.parseCallback(q, reqID, now)
			if err != nil {
				return nil, err
			}
			return &Authorization{RequestID: reqID, Token: tok}, nil
		}
	}
	return &Authorization{RequestID: reqID, RedirectTo: u.String()}, nil
}

// ParseCallback reads the tokens EstateGuru delivers to the redirect URL as
// query parameters (access_token, refresh_token, expires_in, request_id).
// request_id (or requestId) is required here and must be requestID, or end
// with it: a loopback callback can be forged by any web page, and the id is
// what proves this one answers our request. An error parameter becomes the
// matching *provider.Error.
func (c *Client) ParseCallback(q url.Values, requestID string) (provider.Token, error) {
	return c.parseCallback(q, requestID, c.now())
}

func (c *Client) parseCallback(q url.Values, requestID string, now time.Time) (provider.Token, error) {
	secrets := []string{q.Get("access_token"), q.Get("refresh_token")}
	if code := q.Get("error"); code != "" {
		body, _ := json.Marshal(map[string]string{
			"error":             code,
			"error_description": q.Get("error_description"),
		})
		err := adjust(opAuthorize, provider.Classify(Name, opAuthorize, 0, nil, body))
		return provider.Token{}, scrub(err, secrets...)
	}
	fail := func(why string) (provider.Token, error) {
		return provider.Token{}, &provider.Error{Provider: Name, Op: opAuthorize, Kind: provider.KindBadAnswer, Err: errors.New(why)}
	}
	got := q.Get("request_id")
	if got == "" {
		got = q.Get("requestId")
	}
	if got == "" {
		return fail("the callback carries no request_id, so it cannot be matched to our request")
	}
	if !requestIDMatches(got, requestID) {
		return provider.Token{}, mismatch(opAuthorize, requestID)
	}
	access := q.Get("access_token")
	if access == "" {
		return fail("the callback carries no access_token")
	}
	if tt := q.Get("token_type"); tt != "" && !strings.EqualFold(tt, "bearer") {
		return fail("the callback's token_type is not bearer")
	}
	var exp provider.ExpiresIn
	if s := q.Get("expires_in"); s != "" {
		b, _ := json.Marshal(s)
		if err := exp.UnmarshalJSON(b); err != nil {
			return fail("the callback's expires_in is not a number of seconds")
		}
	}
	return provider.Token{
		Access:          provider.Secret(access),
		Refresh:         provider.Secret(q.Get("refresh_token")),
		AccessExpiresAt: min(exp, maxExpiresIn).At(now),
	}, nil
}

// Refresh trades a refresh token for new tokens: POST {base}/oauth/token with
// HTTP Basic client credentials and the form
// grant_type=refresh_token&refresh_token=... . Every refresh is treated as
// rotating: the answer's refresh_token is returned when there is one, the
// given one otherwise. Transient failures are retried under the HTTP policy.
func (c *Client) Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error) {
	if err := c.needCredentials(opRefresh); err != nil {
		return provider.Token{}, err
	}
	if refresh.IsZero() {
		return provider.Token{}, &provider.Error{Provider: Name, Op: opRefresh, Kind: provider.KindReauth,
			Err: errors.New("no refresh token is stored")}
	}
	form := url.Values{}
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", refresh.Reveal())
	secrets := append([]string{refresh.Reveal(), c.ClientSecret.Reveal()},
		provider.BasicForms(c.ClientID, c.ClientSecret.Reveal())...)
	now := c.now()
	resp, err := c.policy(nil).Do(ctx, provider.Request{
		Provider: Name,
		Op:       opRefresh,
		MaxBody:  provider.MaxTokenBody,
		Adjust:   adjuster(opRefresh),
		New: formRequest(c.endpoint("/oauth/token"), form, func(req *http.Request) {
			// Sent as is, as the doc's curl -u does (no form-encoding first).
			req.SetBasicAuth(c.ClientID, c.ClientSecret.Reveal())
		}),
	})
	if err != nil {
		return provider.Token{}, scrub(err, secrets...)
	}
	tok, _, err := decodeToken(opRefresh, resp, "", now)
	if err != nil {
		return provider.Token{}, scrub(err, secrets...)
	}
	if tok.Refresh.IsZero() {
		tok.Refresh = refresh
	}
	return tok, nil
}

// Investments fetches the investor's portfolio: POST
// {base}/userInformation/userInvestments with the bearer token and the form
// requestId=<a fresh UUID>. The answer's requestId, when present, must be
// ours or end with ours. Every money value is parsed exactly; one bad value
// fails the whole answer (never partial data). The raw answer is kept.
func (c *Client) Investments(ctx context.Context, access provider.Secret) (*Portfolio, error) {
	a, err := c.FetchInvestments(ctx, access)
	if err != nil {
		return nil, err
	}
	return a.Decode()
}

// FetchInvestments is Investments without the decoding: the answer, once
// it came with a success status, for the caller to Decode or Stream.
func (c *Client) FetchInvestments(ctx context.Context, access provider.Secret) (*Answer, error) {
	if access.IsZero() {
		return nil, &provider.Error{Provider: Name, Op: opInvestments, Kind: provider.KindInvalidToken,
			Err: errors.New("no access token")}
	}
	reqID, err := c.requestID(opInvestments)
	if err != nil {
		return nil, err
	}
	form := url.Values{}
	form.Set("requestId", reqID)
	resp, err := c.policy(nil).Do(ctx, provider.Request{
		Provider: Name,
		Op:       opInvestments,
		MaxBody:  provider.MaxDataBody,
		Adjust:   adjuster(opInvestments),
		New: formRequest(c.endpoint("/userInformation/userInvestments"), form, func(req *http.Request) {
			req.Header.Set("Authorization", "Bearer "+access.Reveal())
		}),
	})
	if err != nil {
		return nil, scrub(err, access.Reveal())
	}
	return &Answer{resp: resp, reqID: reqID, access: access}, nil
}

// policy is the HTTP policy for one call, on a copy of the configured client
// that never follows a redirect: Go would replay a 307/308 POST body (a client
// secret, a refresh token) to wherever the Location points. When location is
// not nil it receives the (resolved) address of a redirect.
func (c *Client) policy(location *string) *provider.HTTP {
	var h provider.HTTP
	if c.HTTP != nil {
		h = *c.HTTP
	}
	base := h.Client
	if base == nil {
		base = http.DefaultClient
	}
	cl := *base
	cl.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if location != nil {
			*location = req.URL.String()
		}
		return http.ErrUseLastResponse
	}
	h.Client = &cl
	return &h
}

// formRequest builds a fresh form POST for each attempt.
func formRequest(endpoint string, form url.Values, decorate func(*http.Request)) func(ctx context.Context) (*http.Request, error) {
	body := form.Encode()
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if decorate != nil {
			decorate(req)
		}
		return req, nil
	}
}

func (c *Client) endpoint(path string) string {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	return base + path
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) needCredentials(op string) error {
	var missing string
	switch {
	case c.ClientID == "":
		missing = "no client id is configured"
	case c.ClientSecret.IsZero():
		missing = "no client secret is configured"
	default:
		return nil
	}
	return &provider.Error{Provider: Name, Op: op, Kind: provider.KindClient, Err: errors.New(missing)}
}

func (c *Client) requestID(op string) (string, error) {
	id := ""
	if c.NewRequestID != nil {
		id = c.NewRequestID()
	} else {
		id = uuid.NewString()
	}
	if strings.TrimSpace(id) == "" {
		return "", &provider.Error{Provider: Name, Op: op, Kind: provider.KindRequest, Err: errors.New("empty request id")}
	}
	return id, nil
}

// requestIDMatches reports whether an answer's request id is ours. EstateGuru
// echoes the id with a prefix prepended (its sample answer to requestId
// d16509f6-... carries 1313d3df-...-6dc84b71bd16509f6-...), so a suffix
// match is accepted.
// CallbackMatches reports whether a redirect callback carries our request
// id: one that does not is not the answer to our authorize call (anyone can
// send the loopback listener a request) and is to be ignored.
func CallbackMatches(q url.Values, requestID string) bool {
	got := q.Get("request_id")
	if got == "" {
		got = q.Get("requestId")
	}
	return requestIDMatches(got, requestID)
}

func requestIDMatches(got, ours string) bool {
	return ours != "" && strings.HasSuffix(got, ours)
}

// mismatch is the error for an answer that carries another request's id. The
// foreign id is not quoted: it is the provider's text, and ours is enough to
// find the call.
func mismatch(op, ours string) error {
	return &provider.Error{Provider: Name, Op: op, Kind: provider.KindBadAnswer,
		Err: fmt.Errorf("request id mismatch: the answer is not for our request %s", ours)}
}
