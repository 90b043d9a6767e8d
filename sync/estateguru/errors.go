package estateguru

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode"

	"syncer/sync/provider"
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

// minTail is the shortest cut-off start of a secret that scrub removes from
// the end of a truncated description; shorter pieces would match ordinary
// words and say next to nothing about the secret.
const minTail = 4

// scrub removes secrets from err's text: the ones just sent, and the ones
// an answer carried. provider.Classify quotes the provider's code and
// error_description, and a provider echoing the request would otherwise put
// a token into a log line. It edits the *provider.Error in place.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	forms := secretForms(secrets)
	if len(forms) == 0 {
		return err
	}
	var pe *provider.Error
	if !errors.As(err, &pe) {
		if redact(err.Error(), forms) == err.Error() {
			return err
		}
		return &provider.Error{Provider: Name, Kind: provider.KindUnknown, Err: errors.New(redact(err.Error(), forms))}
	}
	pe.Code = redact(pe.Code, forms)
	pe.Description = redact(pe.Description, forms)
	if pe.Err != nil {
		if s := pe.Err.Error(); redact(s, forms) != s {
			pe.Err = errors.New(redact(s, forms))
		}
	}
	return err
}

// secretForms lists each secret as it may come back: raw, JSON-escaped,
// query-escaped, and with non-printable runes blanked as provider's text
// cleaning does. Longest first, so a secret containing another goes whole.
func secretForms(secrets []string) []string {
	seen := map[string]bool{}
	var forms []string
	add := func(s string) {
		if strings.TrimSpace(s) != "" && !seen[s] {
			seen[s] = true
			forms = append(forms, s)
		}
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		add(s)
		add(strings.TrimSpace(s))
		if b, err := json.Marshal(s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		add(strings.TrimSpace(strings.Map(func(r rune) rune {
			if unicode.IsPrint(r) {
				return r
			}
			return ' '
		}, s)))
	}
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return forms
}

func redact(s string, forms []string) string {
	if s == "" {
		return s
	}
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, provider.Redacted)
	}
	// provider's text cleaning cuts long descriptions and appends "…": the
	// cut may have kept only the start of a secret.
	const ellipsis = "…"
	if body, ok := strings.CutSuffix(s, ellipsis); ok {
		for _, f := range forms {
			for k := len(f) - 1; k >= minTail; k-- {
				if strings.HasSuffix(body, f[:k]) {
					return body[:len(body)-k] + provider.Redacted + ellipsis
				}
			}
		}
	}
	return s
}

// cleanText keeps provider-supplied text fit for an error message: printable,
// one line, at most max runes.
func cleanText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return s
}
