package everreal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/syncerhq/syncer/sync/provider"
)

// maxUnix is 9999-12-31T23:59:59Z. A later exp is garbage, and would not fit
// an RFC 3339 timestamp in the database.
const maxUnix = 253402300799

// RefreshTokenExpiry reads when a refresh token dies from its JWT exp claim,
// so a person can be warned before a re-login is needed. The signature is not
// checked: the key is EverReal's, and nothing is trusted on the strength of
// this claim beyond a warning date. Errors never quote the token.
func RefreshTokenExpiry(jwt string) (time.Time, error) {
	fail := func(msg string) (time.Time, error) {
		// KindUnknown: the token itself still works, so no hint about
		// re-connecting or about answers kept out of the database applies.
		return time.Time{}, &provider.Error{Provider: Name, Op: "refresh token expiry",
			Kind: provider.KindUnknown, Err: errors.New(msg)}
	}
	// Counted before splitting, so a huge string of dots costs nothing.
	if n := strings.Count(jwt, "."); n != 2 {
		return fail("the refresh token is not a JWT: it has " + strconv.Itoa(n+1) + " dot-separated parts, not 3")
	}
	payload := strings.Split(jwt, ".")[1]
	if payload == "" {
		return fail("the refresh token's JWT payload is empty")
	}
	// The decoders skip CR and LF; a JWT has none.
	if strings.ContainsAny(payload, "\r\n") {
		return fail("the refresh token's JWT payload is not base64url")
	}
	enc := base64.RawURLEncoding
	if strings.HasSuffix(payload, "=") {
		enc = base64.URLEncoding
	}
	b, err := enc.DecodeString(payload)
	if err != nil {
		return fail("the refresh token's JWT payload is not base64url")
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(b, &claims); err != nil || claims == nil {
		return fail("the refresh token's JWT payload is not a JSON object")
	}
	raw, ok := claims["exp"]
	if !ok {
		return fail("the refresh token's JWT has no exp claim")
	}
	sec, err := numericDate(raw)
	if err != nil {
		return fail("the refresh token's JWT exp claim " + err.Error())
	}
	return time.Unix(sec, 0).UTC(), nil
}

// numericDate reads an RFC 7519 NumericDate: a JSON number of seconds, maybe
// with a fraction or exponent. Whole seconds are enough for a warning.
func numericDate(raw json.RawMessage) (int64, error) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || !(s[0] == '-' || '0' <= s[0] && s[0] <= '9') {
		return 0, errors.New("is not a number")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n > maxUnix {
			return 0, errors.New("is out of range (not after 1970, or after the year 9999)")
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("is not a number")
	}
	if math.IsNaN(f) || f < 1 || f > maxUnix {
		return 0, errors.New("is out of range (not after 1970, or after the year 9999)")
	}
	return int64(f), nil
}
