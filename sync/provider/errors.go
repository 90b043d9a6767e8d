package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// Kind says what a failed provider call means for the caller: retry, refresh,
// or stop and ask a person.
type Kind int

const (
	// KindUnknown is a failure nothing more is known about.
	KindUnknown Kind = iota
	// KindReauth: the provider refused the refresh token or the user
	// (invalid_grant). Never ask again with that token; a person must
	// re-connect.
	KindReauth
	// KindClient: the client credentials are wrong (invalid_client,
	// EstateGuru's Unauthorized). Every connection of that provider will fail
	// until the configuration is fixed.
	KindClient
	// KindInvalidToken: the access token was refused. Refresh once and retry
	// once.
	KindInvalidToken
	// KindTransient: the provider is down, overloaded or rate limiting, or the
	// network failed. Retry later.
	KindTransient
	// KindBadAnswer: the provider answered something that is not what it
	// documents: HTML, truncated or broken JSON, an oversized body.
	KindBadAnswer
	// KindRequest: the provider rejected the request itself (400 validation).
	KindRequest
)

func (k Kind) String() string {
	switch k {
	case KindReauth:
		return "reauth_required"
	case KindClient:
		return "client_credentials"
	case KindInvalidToken:
		return "invalid_token"
	case KindTransient:
		return "transient"
	case KindBadAnswer:
		return "bad_answer"
	case KindRequest:
		return "bad_request"
	default:
		return "unknown"
	}
}

// Error is a failed call to a provider. Its message names the provider and
// the operation and never holds a secret: the description is the provider's
// own error_description, trimmed, and request bodies are never quoted.
type Error struct {
	Provider    string // "everreal", "estateguru"
	Op          string // "refresh", "users/me", ...
	Kind        Kind
	Status      int    // HTTP status, 0 when no answer arrived
	Code        string // the OAuth error code ("invalid_grant"), if any
	Description string // the provider's error_description, if any
	RetryAfter  time.Duration
	Err         error // the underlying cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	b.WriteString(": ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	switch {
	case e.Code != "":
		b.WriteString(e.Code)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(e.Kind.String())
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	switch {
	case e.RetryAfter >= 24*time.Hour:
		b.WriteString(" (the provider asked to wait more than a day)")
	case e.RetryAfter > 0:
		fmt.Fprintf(&b, " (the provider asked to wait %s)", e.RetryAfter)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.Code != "" && e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if hint := e.Hint(); hint != "" {
		b.WriteString(" (")
		b.WriteString(hint)
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Hint says what a person should do about the error, or "" when waiting is
// enough.
func (e *Error) Hint() string {
	switch e.Kind {
	case KindReauth:
		return "the provider refused the stored login"
	case KindClient:
		return "check the client id and secret configured for " + e.Provider
	case KindBadAnswer:
		return "the provider answered something unexpected; it is kept out of the database, try again later"
	}
	return ""
}

// KindOf returns the Kind of the first *Error in err's chain, or KindUnknown.
func KindOf(err error) Kind {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return KindUnknown
}

// oauthError is the error body OAuth servers answer with. EstateGuru also
// uses "error" for its own ids ("Unauthorized").
type oauthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Message          string `json:"message"`
}

// Classify turns a non-2xx answer into an *Error. The OAuth error code in the
// body decides first (EverReal answers invalid_grant with 403, EstateGuru
// answers a rate-limit breach with 403); the status only when the body has no
// code.
func Classify(providerName, op string, status int, header http.Header, body []byte) *Error {
	e := &Error{Provider: providerName, Op: op, Status: status}
	var oe oauthError
	if json.Unmarshal(body, &oe) == nil {
		e.Code = CleanText(oe.Error, 64)
		e.Description = CleanText(firstNonEmpty(oe.ErrorDescription, oe.Message), 200)
	}
	e.RetryAfter = parseRetryAfter(header, status)
	if e.Code == "" && status >= 500 {
		// A gateway's HTML page says more by what it is than by its status.
		if what := describeBody(header, body); !strings.HasPrefix(what, "answer is not the documented JSON") {
			e.Err = errors.New(what)
		}
	}
	switch strings.ToLower(e.Code) {
	case "invalid_grant":
		e.Kind = KindReauth
	case "invalid_client", "unauthorized_client", "unauthorized":
		e.Kind = KindClient
	case "invalid_token":
		e.Kind = KindInvalidToken
	case "invalid_request", "unsupported_grant_type", "invalid_scope":
		e.Kind = KindRequest
	case "rate_limit_exceeded", "too_many_requests", "temporarily_unavailable", "server_error":
		e.Kind = KindTransient
	default:
		e.Kind = kindOfStatus(status)
	}
	return e
}

func kindOfStatus(status int) Kind {
	switch {
	case status == http.StatusUnauthorized:
		return KindInvalidToken
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return KindTransient
	case status >= 400:
		return KindRequest
	default:
		return KindBadAnswer
	}
}

// parseRetryAfter reads Retry-After (seconds or an HTTP date) or EverReal's
// X-RateLimit-Reset (seconds to wait). Zero when neither is there.
// X-RateLimit-Reset comes on every EverReal answer, so it counts only when
// the limit is what failed (a 429, or nothing remaining): a 500 must not
// wait out the rate-limit window.
func parseRetryAfter(h http.Header, status int) time.Duration {
	if h == nil {
		return 0
	}
	for _, name := range []string{"Retry-After", "X-RateLimit-Reset"} {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		if name == "X-RateLimit-Reset" && status != http.StatusTooManyRequests &&
			strings.TrimSpace(h.Get("X-RateLimit-Remaining")) != "0" {
			continue
		}
		var secs int64
		if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 && fmt.Sprint(secs) == v {
			// Past about 292 years the product overflows into the past.
			return time.Duration(min(secs, math.MaxInt64/int64(time.Second))) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := time.Until(t); d > 0 {
				return d
			}
			return 0
		}
	}
	return 0
}

// CleanText keeps a provider-supplied string fit for a log line: printable,
// one line, at most max runes.
func CleanText(s string, max int) string {
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

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// BadAnswer is the error for a 2xx answer that cannot be used. It quotes the
// start of the body only when it is plainly not JSON (an HTML page), so a
// token in a broken JSON answer is never echoed.
func BadAnswer(providerName, op string, status int, header http.Header, body []byte, cause error) *Error {
	what := describeBody(header, body)
	err := cause
	if what != "" {
		if cause != nil {
			err = fmt.Errorf("%s: %w", what, cause)
		} else {
			err = errors.New(what)
		}
	}
	return &Error{Provider: providerName, Op: op, Kind: KindBadAnswer, Status: status, Err: err}
}

func describeBody(header http.Header, body []byte) string {
	trimmed := strings.TrimSpace(string(body[:min(len(body), 512)]))
	ct := ""
	if header != nil {
		ct = header.Get("Content-Type")
	}
	switch {
	case len(body) == 0:
		return "empty answer"
	case strings.HasPrefix(trimmed, "<"), strings.Contains(ct, "html"):
		return fmt.Sprintf("answer is HTML, not JSON (Content-Type %q, %d bytes)", ct, len(body))
	case !strings.HasPrefix(trimmed, "{") && !strings.HasPrefix(trimmed, "["):
		return fmt.Sprintf("answer is not JSON (Content-Type %q, %d bytes)", ct, len(body))
	}
	return fmt.Sprintf("answer is not the documented JSON (%d bytes)", len(body))
}
