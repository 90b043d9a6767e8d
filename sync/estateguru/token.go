package estateguru

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/syncerhq/syncer/sync/provider"
)

// tokenAnswer is the documented grant answer (access_token, token_type,
// expires_in, refresh_token, request_id), with the spellings and fields a
// tolerant reader also accepts.
type tokenAnswer struct {
	AccessToken      string             `json:"access_token"`
	TokenType        string             `json:"token_type"`
	ExpiresIn        provider.ExpiresIn `json:"expires_in"`
	RefreshToken     string             `json:"refresh_token"`
	RefreshExpiresIn provider.ExpiresIn `json:"refresh_expires_in"`
	RequestID        string             `json:"request_id"`
	RequestIDCamel   string             `json:"requestId"`

	// An error body that came with a 2xx status.
	Error json.RawMessage `json:"error"`

	// Where to send the person, when the authorize call answers with an
	// address rather than tokens.
	RedirectURL     string `json:"redirectUrl"`
	RedirectURLS    string `json:"redirect_url"`
	RedirectURI     string `json:"redirectUri"`
	RedirectURIS    string `json:"redirect_uri"`
	AuthorizeURL    string `json:"authorizeUrl"`
	AuthorizeURLS   string `json:"authorize_url"`
	URL             string `json:"url"`
	Location        string `json:"location"`
	RedirectToCamel string `json:"redirectTo"`
}

func (ta *tokenAnswer) requestID() string {
	if ta.RequestID != "" {
		return ta.RequestID
	}
	return ta.RequestIDCamel
}

func (ta *tokenAnswer) urls() []string {
	return []string{ta.RedirectURL, ta.RedirectURLS, ta.RedirectURI, ta.RedirectURIS,
		ta.AuthorizeURL, ta.AuthorizeURLS, ta.RedirectToCamel, ta.URL, ta.Location}
}

// errNoAccessToken is wrapped by the error for a grant answer without a token.
var errNoAccessToken = errors.New("the answer carries no access_token")

// decodeToken reads a 2xx grant answer. When reqID is not "", the answer's
// request id, if it has one, must match it. The answer is returned too (its
// URLs matter to Authorize); every error is a *provider.Error.
func decodeToken(op string, resp *provider.Response, reqID string, now time.Time) (provider.Token, *tokenAnswer, error) {
	var ta tokenAnswer
	if err := provider.DecodeJSON(Name, op, resp, &ta); err != nil {
		return provider.Token{}, nil, err
	}
	secrets := []string{ta.AccessToken, ta.RefreshToken}
	if errorCode(ta.Error) != "" {
		err := adjust(op, provider.Classify(Name, op, resp.Status, resp.Header, resp.Body))
		return provider.Token{}, nil, scrub(err, secrets...)
	}
	if got := ta.requestID(); reqID != "" && got != "" && !requestIDMatches(got, reqID) {
		return provider.Token{}, nil, mismatch(op, reqID)
	}
	bad := func(err error) error {
		return provider.BadAnswer(Name, op, resp.Status, resp.Header, resp.Body, err)
	}
	if ta.AccessToken == "" {
		return provider.Token{}, &ta, bad(errNoAccessToken)
	}
	if ta.TokenType != "" && !strings.EqualFold(ta.TokenType, "bearer") {
		return provider.Token{}, nil, bad(errors.New("the token_type is not bearer"))
	}
	return provider.Token{
		Access:           provider.Secret(ta.AccessToken),
		Refresh:          provider.Secret(ta.RefreshToken),
		AccessExpiresAt:  min(ta.ExpiresIn, maxExpiresIn).At(now),
		RefreshExpiresAt: min(ta.RefreshExpiresIn, maxExpiresIn*10).At(now),
	}, &ta, nil
}

// decodeAuthorize reads a 2xx answer to the authorize call: tokens, or an
// address to send the person to (resolved against the endpoint; an address
// equal to our own redirectURL is only the provider echoing our request, not
// a place to go).
func decodeAuthorize(resp *provider.Response, reqID, redirectURL, endpoint string, now time.Time) (*Authorization, error) {
	tok, ta, err := decodeToken(opAuthorize, resp, reqID, now)
	if err == nil {
		return &Authorization{RequestID: reqID, Token: tok}, nil
	}
	if !errors.Is(err, errNoAccessToken) || ta == nil {
		return nil, err
	}
	base, perr := url.Parse(endpoint)
	if perr != nil {
		return nil, err
	}
	for _, raw := range ta.urls() {
		raw = strings.TrimSpace(raw)
		if raw == "" || raw == redirectURL {
			continue
		}
		u, perr := base.Parse(raw)
		if perr != nil {
			continue
		}
		return &Authorization{RequestID: reqID, RedirectTo: u.String()}, nil
	}
	return nil, provider.BadAnswer(Name, opAuthorize, resp.Status, resp.Header, resp.Body,
		errors.New("the answer carries neither an access_token nor an address to send the person to"))
}

// errorCode returns the error code of a JSON "error" member when it is a
// non-empty string, else "".
func errorCode(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return strings.TrimSpace(s)
}
