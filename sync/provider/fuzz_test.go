package provider

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var fuzzNow = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

// expires_in arrives as a number or a string, from both providers' token
// answers.
func FuzzExpiresIn(f *testing.F) {
	for _, s := range []string{`3600`, `"3600"`, `43199`, `null`, `""`, `" 60 "`, `"3600.0"`, `-1`, `"-5"`,
		`1e300`, `"1e12"`, `9223372036854775807`, `"abc"`, `"ééééééééééééééé"`, `{}`, `[1]`, `true`, `0`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e ExpiresIn
		if err := e.UnmarshalJSON(b); err != nil {
			// The error quotes the start of the value: never half a character.
			if utf8.Valid(b) && !utf8.ValidString(truncate(string(b), 20)) {
				t.Fatalf("truncate(%q, 20) cuts a character in two", b)
			}
			return
		}
		if e < 0 {
			t.Fatalf("UnmarshalJSON(%q) = %d, negative", b, e)
		}
		at := e.At(fuzzNow)
		switch {
		case e == 0 && !at.IsZero():
			t.Fatalf("no lifetime, but an expiry %v", at)
		case e > 0 && !at.After(fuzzNow):
			t.Fatalf("UnmarshalJSON(%q) = %d, expiry %v is not after now", b, e, at)
		}
		// A plain whole number reads as itself, quoted or not.
		if n, err := strconv.ParseInt(strings.Trim(string(b), `" `), 10, 64); err == nil && n >= 0 {
			if int64(e) != n {
				t.Fatalf("UnmarshalJSON(%q) = %d, want %d", b, e, n)
			}
		}
	})
}

// Classify reads every error answer: whatever the body, status and headers,
// it must give a usable one-line error with a known kind.
func FuzzClassify(f *testing.F) {
	f.Add(400, []byte(`{"error":"invalid_grant","error_description":"Invalid refresh token"}`), "")
	f.Add(403, []byte(`{"error":"invalid_grant","error_description":"heimdall.validation.user.does.not.exist"}`), "")
	f.Add(401, []byte(`{"error":"Unauthorized","message":"Bad credentials"}`), "")
	f.Add(429, []byte(`{"error":"too_many_requests"}`), "30")
	f.Add(503, []byte("<html><body>502 Bad Gateway</body></html>"), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(500, []byte(""), "-1")
	f.Add(200, []byte(`{"error":"x\n\u0000y","error_description":"`+strings.Repeat("é", 300)+`"}`), "99999999999999999999")
	f.Add(418, []byte(`[1,2,3]`), " 7 ")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("X-RateLimit-Reset", retryAfter)
		e := Classify("prov", "op", status, h, body)
		if e.Kind < KindUnknown || e.Kind > KindRequest {
			t.Fatalf("kind %d is not a known kind", e.Kind)
		}
		if e.RetryAfter < 0 {
			t.Fatalf("RetryAfter %v is negative", e.RetryAfter)
		}
		msg := e.Error()
		if strings.ContainsAny(msg, "\n\r\x00") {
			t.Fatalf("error %q is not one printable line", msg)
		}
		if !strings.HasPrefix(msg, "prov: op: ") {
			t.Fatalf("error %q does not name the provider and the operation", msg)
		}
		if n := utf8.RuneCountInString(e.Description); n > 201 {
			t.Fatalf("description is %d runes, more than the cap", n)
		}
		// The code decides before the status.
		var oe struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &oe) == nil && oe.Error == "invalid_grant" && e.Kind != KindReauth {
			t.Fatalf("invalid_grant with status %d classified %v", status, e.Kind)
		}
	})
}

// FuzzScrubBytes: ScrubBytes finds a secret in a raw answer exactly when a
// case-folded search does, and leaves no case variant of it behind.
func FuzzScrubBytes(f *testing.F) {
	f.Add([]byte(`{"a":"Tok-1","b":"TOK-1tok-1"}`), "tok-1")
	f.Add([]byte("aaaaAAAAaaaa"), "aAaA")
	f.Fuzz(func(t *testing.T, raw []byte, secret string) {
		clean, n := ScrubBytes(raw, secret)
		found := false
		for _, form := range secretForms([]string{secret}) {
			if strings.Contains(asciiLower(string(raw)), asciiLower(form)) {
				found = true
			}
		}
		if found != (n > 0) {
			t.Fatalf("ScrubBytes(%q, %q) counted %d, found = %v", raw, secret, n, found)
		}
		if n == 0 && string(clean) != string(raw) {
			t.Fatalf("nothing found but the answer changed")
		}
	})
}
