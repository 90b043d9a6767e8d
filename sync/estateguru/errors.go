package estateguru

import (
	"errors"
	"net/http"
	"strings"

	"github.com/syncerhq/syncer/sync/provider"
)

// adjust corrects provider.Classify's Kind for EstateGuru's own error table
// and habits. It edits the *provider.Error in err's chain in place (every
// error it is given was made for this call) and returns err.
//
// The body's error code decides first, the status only when the code is
// missing or unknown:
//
//   - invalid_token: the access token was refused (refresh once, retry
//     once). On the token endpoint it means the refresh token is dead
//     (Spring's "Invalid refresh token (expired)"): re-login.
//   - invalid_grant: the refresh token was refused: re-login.
//   - Unauthorized: the client credentials are wrong. The data call sends
//     no client credentials, so there it can only mean the bearer token.
//   - Errors (and OAuth's invalid_request...): the request was rejected.
//   - no known code and 403: EstateGuru's public API answers a rate-limit
//     breach with 403, so it is transient.
//   - no known code and 401: on authorize and refresh, the client
//     credentials (sent on those calls only); on the data call, the token.
//
// adjuster is adjust for provider.Request.Adjust: inside the policy, so a
// 403 is retried as the transient answer it is.
func adjuster(op string) func(*provider.Error) {
	return func(e *provider.Error) { adjust(op, e) }
}

func adjust(op string, err error) error {
	var pe *provider.Error
	if !errors.As(err, &pe) {
		return err
	}
	switch strings.ToLower(pe.Code) {
	case "invalid_token":
		if op == opRefresh {
			pe.Kind = provider.KindReauth
		} else {
			pe.Kind = provider.KindInvalidToken
		}
	case "invalid_grant":
		pe.Kind = provider.KindReauth
	case "unauthorized":
		if op == opInvestments {
			pe.Kind = provider.KindInvalidToken
		} else {
			pe.Kind = provider.KindClient
		}
	case "invalid_client", "unauthorized_client":
		pe.Kind = provider.KindClient
	case "errors", "invalid_request", "unsupported_grant_type", "invalid_scope",
		"access_denied", "insufficient_scope":
		pe.Kind = provider.KindRequest
	case "rate_limit_exceeded", "too_many_requests", "temporarily_unavailable", "server_error":
		pe.Kind = provider.KindTransient
	default:
		switch {
		case pe.Status == http.StatusForbidden:
			pe.Kind = provider.KindTransient
			if pe.Code == "" && pe.Err == nil {
				pe.Err = errors.New("refused (EstateGuru answers a rate-limit breach with 403; try again later)")
			}
		case pe.Status == http.StatusUnauthorized && op == opInvestments:
			pe.Kind = provider.KindInvalidToken
		case pe.Status == http.StatusUnauthorized:
			pe.Kind = provider.KindClient
		case pe.Status >= 300 && pe.Status < 400 && pe.Code == "" && pe.Err == nil:
			pe.Err = errors.New("redirected instead of answering (redirects are not followed: they could carry credentials elsewhere)")
		}
	}
	return err
}

// scrub removes secrets from err's text: the ones just sent, and the ones an
// answer carried.
func scrub(err error, secrets ...string) error { return provider.Scrub(Name, err, secrets...) }

// cleanText keeps provider-supplied text fit for an error message.
func cleanText(s string, max int) string { return provider.CleanText(s, max) }
