package estateguru

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Cents is an amount of money in exact minor units. It is read from a JSON
// string ("48872900.14") or a JSON number (48872900.14) by ParseCents, from
// the literal text, never through float64. null leaves it as it was.
type Cents int64

// UnmarshalJSON implements json.Unmarshaler.
func (c *Cents) UnmarshalJSON(b []byte) error { return unmarshalWhole(b, (*int64)(c), parseCents) }

// Count is a whole number, such as an investment's quantity: "3", 3 or
// "3.0". null leaves it as it was.
type Count int64

// UnmarshalJSON implements json.Unmarshaler.
func (n *Count) UnmarshalJSON(b []byte) error { return unmarshalWhole(b, (*int64)(n), parseQuantity) }

// unmarshalWhole sets *dst to the number a JSON string or number holds, as
// parse reads its text; null leaves it as it was.
func unmarshalWhole(b []byte, dst *int64, parse func([]byte) (int64, error)) error {
	if isNull(b) {
		return nil
	}
	s, err := numberBytes(b)
	if err != nil {
		return err
	}
	v, err := parse(s)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// Text is a JSON string; null is "".
type Text string

// UnmarshalJSON implements json.Unmarshaler.
func (t *Text) UnmarshalJSON(b []byte) error {
	s, err := stringValue(b)
	if err != nil {
		return err
	}
	*t = Text(s)
	return nil
}

// numberBytes returns the text of a JSON string or the literal of a JSON
// number, never going through float64.
func numberBytes(raw []byte) ([]byte, error) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], nil // no escapes: its bytes are its text
	}
	s, err := numberText(raw)
	return []byte(s), err
}

// field is one member of an answer, as a typed value: the value of the last
// member of its kind (as encoding/json keeps the last of repeated keys) or
// why that value was refused, with the key as the provider spelled it.
type field[T any] struct {
	v   T
	key string
	err error
}

// set decodes raw into the field, replacing what an earlier member of the
// same kind left: its value (null is the zero value) or its refusal. A
// refusal is kept, not returned: the investment's name, read whatever its
// place, then says where the refused value was.
func set[T any](f *field[T], key, raw []byte, decode func([]byte) (T, error)) {
	f.v, f.err = decode(raw)
	if f.err != nil {
		f.key = string(key)
	}
}

// The decoders of set: a fresh value each, so null is the zero value.
func cents(raw []byte) (c Cents, err error) { err = c.UnmarshalJSON(raw); return }
func count(raw []byte) (n Count, err error) { err = n.UnmarshalJSON(raw); return }
func text(raw []byte) (t Text, err error)   { err = t.UnmarshalJSON(raw); return }

// numberText returns the text of a JSON string or the literal of a JSON
// number, never going through float64.
func numberText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("no value")
	}
	switch c := raw[0]; {
	case c == '"':
		return jsonString(raw)
	case c == '-' || ('0' <= c && c <= '9'):
		return string(raw), nil
	default:
		return "", fmt.Errorf("is a JSON %s, expected a number or a numeric string", jsonKind(c))
	}
}

// stringValue is the text of a JSON string; null (or nothing) is "".
func stringValue(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || isNull(raw) {
		return "", nil
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("is a JSON %s, expected a string", jsonKind(raw[0]))
	}
	return jsonString(raw)
}

// jsonString is the value of a JSON string literal, as encoding/json
// decodes it (invalid UTF-8 becomes U+FFFD); plainString is the short
// cut for the usual literal without escapes.
func jsonString(raw []byte) (string, error) {
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("undecodable JSON string")
	}
	return s, nil
}

// plainString returns the value of a JSON string literal that holds no
// escapes, no control characters and only valid UTF-8: its bytes between the
// quotes, exactly what json.Unmarshal would give, without its cost. ok is
// false for anything else (json.Unmarshal decides those).
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	ascii := true
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '"':
		return "string"
	}
	return "number"
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// loanID returns the last non-empty path segment of a resource path
// ("https://estateguru.co/portal/investment/single/EE11111" -> "EE11111"),
// or "" when it has none.
func loanID(resourcePath string) string {
	if id, ok := plainLoanID(resourcePath); ok {
		return id
	}
	return parsedLoanID(resourcePath)
}

// parsedLoanID is loanID the long way, through url.Parse.
func parsedLoanID(resourcePath string) string {
	p := resourcePath
	if u, err := url.Parse(resourcePath); err == nil {
		p = u.Path
	} else {
		// Not a URL (a stray space or percent sign): cut query and fragment
		// by hand.
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
	}
	segs := strings.Split(p, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(segs[i]); s != "" {
			return s
		}
	}
	return ""
}

// plainLoanID is loanID for the plain absolute URLs EstateGuru sends
// ("https://estateguru.co/portal/investment/single/EE11111"), without
// url.Parse's allocations: an http or https URL of printable ASCII without
// %, ? or #, whose path (from the first slash after the authority, where
// url.Parse puts it) has a non-empty segment. The id is a substring of s.
// ok is false for anything else, which loanID then reads the long way; for
// these, it finds the same segment whether or not url.Parse would accept
// the authority.
func plainLoanID(s string) (string, bool) {
	var rest string
	switch {
	case strings.HasPrefix(s, "https://"):
		rest = s[len("https://"):]
	case strings.HasPrefix(s, "http://"):
		rest = s[len("http://"):]
	default:
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' {
			return "", false
		}
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return "", false
	}
	path := rest[slash:]
	end := len(path)
	for end > 0 && path[end-1] == '/' {
		end--
	}
	if end == 0 {
		return "", false
	}
	return path[strings.LastIndexByte(path[:end], '/')+1 : end], true
}
