// Package everreal is the HTTP client for EverReal: the OAuth token endpoint
// (password, refresh and authorization-code grants), token revocation and the
// signed-in user's profile. It knows nothing of storage; every call goes
// through provider.HTTP and every failure is a *provider.Error.
//
// EverReal's quirks, from its own authentication doc, are handled here:
// grants take JSON bodies, the refresh answer carries expires_in as a string
// and may omit refresh_token, and a bad user is a 403 with invalid_grant.
package everreal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/syncerhq/syncer/sync/provider"
)

// Name is the provider's name in errors, logs and the database.
const Name = "everreal"

// scope asks for a refresh token (offline_access) and every scope the client
// is allowed (*), exactly as EverReal's examples do.
const scope = "offline_access *"

// defaultExpiresIn is the access-token lifetime EverReal's doc gives when an
// answer does not state one ("expires by default every hour").
const defaultExpiresIn provider.ExpiresIn = 3600

// maxExpiresIn caps a stated access-token lifetime. A larger one is surely a
// mistake (and would overflow time.Duration far enough out); capping it only
// means refreshing sooner than needed, never using a dead token longer.
const maxExpiresIn provider.ExpiresIn = 366 * 24 * 3600

// Client talks to one EverReal tenant. The zero value is not usable: BaseURL
// is required, and the grants need ClientID and ClientSecret.
type Client struct {
	BaseURL      string // https://{subdomain}.everreal.co; a trailing slash is fine
	ClientID     string
	ClientSecret provider.Secret
	HTTP         *provider.HTTP   // nil: a zero provider.HTTP (no retries, no limit)
	Now          func() time.Time // nil: time.Now
}

// BaseURLForSubdomain returns https://{sub}.everreal.co for a tenant's
// subdomain, which must be one DNS label. Upper case is folded, since DNS is
// case-insensitive and the URL ends up in the database.
func BaseURLForSubdomain(sub string) (string, error) {
	fail := func(why string) (string, error) {
		return "", &provider.Error{Provider: Name, Op: "subdomain", Kind: provider.KindRequest,
			Err: fmt.Errorf("%q is not an EverReal subdomain: %s", clip(sub, 80), why)}
	}
	switch {
	case sub == "":
		return fail("it is empty")
	case strings.Contains(sub, "."), strings.Contains(sub, "/"):
		return fail("give only the first label (acme for https://acme.everreal.co), or a full URL where one is accepted")
	case len(sub) > 63:
		return fail("a DNS label has at most 63 characters")
	case sub[0] == '-' || sub[len(sub)-1] == '-':
		return fail("it may not begin or end with a hyphen")
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fail("only letters, digits and hyphens are allowed")
		}
	}
	return "https://" + strings.ToLower(sub) + ".everreal.co", nil
}

// PasswordGrant logs in with a user's name and password and returns the
// tokens. It is sent once and never retried: every successful login can
// evict one of the at most 50 refresh tokens EverReal keeps per client and
// user. The answer must carry a refresh token, which is the point of logging
// in.
func (c *Client) PasswordGrant(ctx context.Context, username string, password provider.Secret) (provider.Token, error) {
	const op = "password grant"
	secrets := []string{password.Reveal(), c.ClientSecret.Reveal()}
	if err := c.checkClient(op); err != nil {
		return provider.Token{}, err
	}
	switch {
	case strings.TrimSpace(username) == "":
		return provider.Token{}, localError(op, provider.KindRequest, "no username given")
	case password.IsZero():
		return provider.Token{}, localError(op, provider.KindRequest, "no password given")
	case !utf8.ValidString(username):
		return provider.Token{}, localError(op, provider.KindRequest, "the username is not valid UTF-8")
	case !utf8.ValidString(password.Reveal()):
		// encoding/json would silently replace the bad bytes and send a
		// different password.
		return provider.Token{}, localError(op, provider.KindRequest, "the password is not valid UTF-8")
	}
	body := struct {
		Username     string `json:"username"`
		Password     string `json:"password"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Scope        string `json:"scope"`
		GrantType    string `json:"grant_type"`
	}{username, password.Reveal(), c.ClientID, c.ClientSecret.Reveal(), scope, "password"}
	return c.loginGrant(ctx, op, body, secrets)
}

// Refresh trades a refresh token for a new access token. EverReal may not
// return a new refresh token; the one passed in then stays valid and is
// returned again, so the caller can always store what comes back.
func (c *Client) Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error) {
	const op = "refresh"
	secrets := []string{refresh.Reveal(), c.ClientSecret.Reveal()}
	if err := c.checkClient(op); err != nil {
		return provider.Token{}, err
	}
	if refresh.IsZero() {
		// Nothing to refresh with: only a new login helps.
		return provider.Token{}, localError(op, provider.KindReauth, "no refresh token stored")
	}
	if !utf8.ValidString(refresh.Reveal()) {
		return provider.Token{}, localError(op, provider.KindReauth, "the stored refresh token is not valid UTF-8")
	}
	body := struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		RefreshToken string `json:"refresh_token"`
	}{"refresh_token", c.ClientID, c.ClientSecret.Reveal(), refresh.Reveal()}
	return c.grant(ctx, op, body, false, refresh, secrets)
}

// AuthorizeURL is where a person's browser goes to start the
// authorization-code flow with PKCE (S256). The caller keeps state and the
// code verifier, and later calls ExchangeCode.
func (c *Client) AuthorizeURL(redirectURI, state, codeChallenge string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {c.ClientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {state},
		"code_challenge":        {codeChallenge},
		"code_challenge_method": {"S256"},
	}
	return strings.TrimRight(c.BaseURL, "/") + "/accounts/dialog/authorize?" + q.Encode()
}

// ExchangeCode trades an authorization code for tokens. It is sent once: a
// code is single-use, so a retry after a lost answer could only fail.
func (c *Client) ExchangeCode(ctx context.Context, code, redirectURI, codeVerifier string) (provider.Token, error) {
	const op = "code exchange"
	secrets := []string{code, codeVerifier, c.ClientSecret.Reveal()}
	if err := c.checkClient(op); err != nil {
		return provider.Token{}, err
	}
	switch {
	case code == "":
		return provider.Token{}, localError(op, provider.KindRequest, "no authorization code given")
	case redirectURI == "":
		return provider.Token{}, localError(op, provider.KindRequest, "no redirect URI given")
	case !validVerifier(codeVerifier):
		// Checked here so a bad verifier does not burn the single-use code.
		return provider.Token{}, localError(op, provider.KindRequest,
			"the code verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)")
	case !utf8.ValidString(code) || !utf8.ValidString(redirectURI):
		return provider.Token{}, localError(op, provider.KindRequest, "the code or redirect URI is not valid UTF-8")
	}
	body := struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Code         string `json:"code"`
		RedirectURI  string `json:"redirect_uri"`
		CodeVerifier string `json:"code_verifier"`
	}{"authorization_code", c.ClientID, c.ClientSecret.Reveal(), code, redirectURI, codeVerifier}
	return c.loginGrant(ctx, op, body, secrets)
}

// loginGrant sends a grant that starts a login (password or code): sent once,
// and useless without a refresh token, which syncer lives on from then on.
func (c *Client) loginGrant(ctx context.Context, op string, body any, secrets []string) (provider.Token, error) {
	tok, err := c.grant(ctx, op, body, true, "", secrets)
	if err != nil {
		return provider.Token{}, err
	}
	if tok.Refresh.IsZero() {
		return provider.Token{}, localError(op, provider.KindBadAnswer,
			"the answer has no refresh_token (was offline_access granted to this client?)")
	}
	return tok, nil
}

// Revoke asks EverReal to forget a token. It is sent once. The token travels
// in the query string, as documented, so the URL never goes into an error.
func (c *Client) Revoke(ctx context.Context, token provider.Secret) error {
	const op = "revoke"
	if token.IsZero() {
		return localError(op, provider.KindRequest, "no token to revoke")
	}
	u, err := c.endpoint(op, "accounts", "api", "tokenrevoke")
	if err != nil {
		return err
	}
	target := u.String()
	// The query is set on the built request, never parsed, so no URL parse
	// error can quote the token.
	query := "token=" + url.QueryEscape(token.Reveal())
	_, err = c.http().Do(ctx, provider.Request{
		Provider: Name,
		Op:       op,
		MaxBody:  provider.MaxTokenBody,
		NoRetry:  true,
		New: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
			if err != nil {
				return nil, err
			}
			req.URL.RawQuery = query
			req.Header.Set("Accept", "application/json")
			return req, nil
		},
	})
	if err != nil {
		return scrub(err, token.Reveal(), c.ClientSecret.Reveal())
	}
	return nil
}

// grant posts a JSON body to the token endpoint and reads the token answer.
// prevRefresh is kept when the answer has no refresh token.
func (c *Client) grant(ctx context.Context, op string, body any, noRetry bool, prevRefresh provider.Secret, secrets []string) (provider.Token, error) {
	u, err := c.endpoint(op, "accounts", "oauth", "token")
	if err != nil {
		return provider.Token{}, err
	}
	target := u.String()
	payload, err := json.Marshal(body)
	if err != nil {
		// Only strings go in; this cannot happen, and must not quote them.
		return provider.Token{}, localError(op, provider.KindRequest, "cannot encode the request")
	}
	// Taken before sending: the token was issued after this, so the expiry
	// computed from it errs early, never late.
	now := c.now()
	resp, err := c.http().Do(ctx, provider.Request{
		Provider: Name,
		Op:       op,
		MaxBody:  provider.MaxTokenBody,
		NoRetry:  noRetry,
		New: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			return req, nil
		},
	})
	if err != nil {
		return provider.Token{}, scrub(err, secrets...)
	}
	tok, err := parseTokenAnswer(op, resp, now, prevRefresh)
	if err != nil {
		return provider.Token{}, scrub(err, secrets...)
	}
	return tok, nil
}

// tokenAnswer is the token endpoint's 200 body. expires_in is kept raw so a
// strange value costs only the default lifetime, not the tokens just issued.
type tokenAnswer struct {
	AccessToken  string          `json:"access_token"`
	RefreshToken string          `json:"refresh_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	TokenType    string          `json:"token_type"`
	Error        string          `json:"error"`
}

// parseTokenAnswer reads a 2xx token answer. It never returns a token without
// an access token. A refresh token that is not a readable JWT only leaves
// RefreshExpiresAt zero: the token works all the same.
func parseTokenAnswer(op string, resp *provider.Response, now time.Time, prevRefresh provider.Secret) (provider.Token, error) {
	var a tokenAnswer
	if err := decodeJSON(op, resp, &a); err != nil {
		return provider.Token{}, err
	}
	if a.AccessToken == "" {
		if a.Error != "" {
			// An OAuth error dressed as a 200: its code still decides.
			return provider.Token{}, provider.Classify(Name, op, resp.Status, resp.Header, resp.Body)
		}
		return provider.Token{}, provider.BadAnswer(Name, op, resp.Status, resp.Header, resp.Body,
			errors.New("the token answer has no access_token"))
	}
	if !headerSafe(a.AccessToken) {
		return provider.Token{}, provider.BadAnswer(Name, op, resp.Status, resp.Header, resp.Body,
			errors.New("the access_token has control characters and cannot be sent as a bearer token"))
	}
	tok := provider.Token{
		Access:          provider.Secret(a.AccessToken),
		Refresh:         provider.Secret(a.RefreshToken),
		AccessExpiresAt: accessLifetime(a.ExpiresIn).At(now),
	}
	if tok.Refresh.IsZero() {
		tok.Refresh = prevRefresh
	}
	if !tok.Refresh.IsZero() {
		if exp, err := RefreshTokenExpiry(tok.Refresh.Reveal()); err == nil {
			tok.RefreshExpiresAt = exp
		}
	}
	return tok, nil
}

// accessLifetime reads expires_in (a number or, in refresh answers, a
// string). Absent, zero or unreadable means the documented default hour.
func accessLifetime(raw json.RawMessage) provider.ExpiresIn {
	var e provider.ExpiresIn
	if len(raw) == 0 || json.Unmarshal(raw, &e) != nil || e <= 0 {
		return defaultExpiresIn
	}
	return min(e, maxExpiresIn)
}

// decodeJSON is provider.DecodeJSON that also says "truncated" when the body
// stops in the middle of a value, which is what a cut connection looks like.
func decodeJSON(op string, resp *provider.Response, v any) error {
	if !json.Valid(resp.Body) && truncatedJSON(resp.Body) {
		return provider.BadAnswer(Name, op, resp.Status, resp.Header, resp.Body, errors.New("truncated JSON"))
	}
	return provider.DecodeJSON(Name, op, resp, v)
}

func truncatedJSON(body []byte) bool {
	t := bytes.TrimSpace(body)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return false
	}
	var raw json.RawMessage
	err := json.NewDecoder(bytes.NewReader(t)).Decode(&raw)
	return errors.Is(err, io.ErrUnexpectedEOF)
}

func (c *Client) checkClient(op string) error {
	if c.ClientID == "" {
		return localError(op, provider.KindClient, "no client id configured")
	}
	if c.ClientSecret.IsZero() {
		return localError(op, provider.KindClient, "no client secret configured")
	}
	if !utf8.ValidString(c.ClientSecret.Reveal()) || !utf8.ValidString(c.ClientID) {
		return localError(op, provider.KindClient, "the client id or secret is not valid UTF-8")
	}
	return nil
}

// endpoint joins the base URL and a path. Its errors never quote the base
// URL, which could carry user:password.
func (c *Client) endpoint(op string, elem ...string) (*url.URL, error) {
	base := strings.TrimSpace(c.BaseURL)
	if base == "" {
		return nil, localError(op, provider.KindRequest, "no base URL configured")
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return nil, localError(op, provider.KindRequest, "the base URL is not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, localError(op, provider.KindRequest, "the base URL must start with https://")
	case u.Host == "":
		return nil, localError(op, provider.KindRequest, "the base URL has no host")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, localError(op, provider.KindRequest, "the base URL may not have a query or fragment")
	}
	return u.JoinPath(elem...), nil
}

func (c *Client) http() *provider.HTTP {
	if c.HTTP == nil {
		return &provider.HTTP{}
	}
	return c.HTTP
}

func (c *Client) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func localError(op string, kind provider.Kind, msg string) *provider.Error {
	return &provider.Error{Provider: Name, Op: op, Kind: kind, Err: errors.New(msg)}
}

// headerSafe reports whether s can go in an HTTP header value. Spaces are
// allowed: EverReal's own sample access token is "NEW TOKEN".
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// validVerifier checks a PKCE code verifier against RFC 7636, section 4.1.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
