package provider

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"sort"
	"strings"
	"unicode"
)

// minTail is the shortest cut-off start of a secret that Scrub removes from
// the end of a truncated description; shorter pieces would match ordinary
// words and say next to nothing about the secret.
const minTail = 4

// Scrub removes secrets from err's text: the ones a call just sent and the
// ones its answer carried. Classify quotes the provider's code and
// error_description, and a provider echoing the request would otherwise put
// a token into a log line. A *Error in err's chain is edited in place (every
// error given here was made for this call); any other error that leaks is
// replaced by a *Error of providerName carrying the redacted text.
func Scrub(providerName string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	forms := secretForms(secrets)
	if len(forms) == 0 {
		return err
	}
	var pe *Error
	if !errors.As(err, &pe) {
		if redact(err.Error(), forms) == err.Error() {
			return err
		}
		return &Error{Provider: providerName, Kind: KindUnknown, Err: errors.New(redact(err.Error(), forms))}
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

// ScrubText replaces every form of each secret in s with [REDACTED].
func ScrubText(s string, secrets ...string) string {
	return redact(s, secretForms(secrets))
}

// secretForms lists each secret as it may come back: raw, JSON-escaped,
// query-escaped, and with non-printable runes blanked as CleanText does.
// Longest first, so a secret containing another goes whole.
func secretForms(secrets []string) []string {
	seen := map[string]bool{}
	var forms []string
	add := func(s string) {
		if len(strings.TrimSpace(s)) >= minTail && !seen[s] {
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

// BasicForms are the ways HTTP Basic client credentials may come back: the
// base64 of "id:secret", in the standard and URL alphabets, padded or not.
// A provider echoing the Authorization header would otherwise leak the
// secret in a form no plain match finds.
func BasicForms(id, secret string) []string {
	if secret == "" {
		return nil
	}
	b := []byte(id + ":" + secret)
	return []string{
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
}

// redact replaces every form, matched without regard to ASCII case (a
// provider may echo a token upper-cased), with Redacted.
func redact(s string, forms []string) string {
	if s == "" {
		return s
	}
	for _, f := range forms {
		s = replaceFold(s, f, Redacted)
	}
	// CleanText cuts long descriptions and appends "…": the cut may have
	// kept only the start of a secret.
	const ellipsis = "…"
	if body, ok := strings.CutSuffix(s, ellipsis); ok {
		lower := asciiLower(body)
		for _, f := range forms {
			lf := asciiLower(f)
			for k := len(f) - 1; k >= minTail; k-- {
				if strings.HasSuffix(lower, lf[:k]) {
					return body[:len(body)-k] + Redacted + ellipsis
				}
			}
		}
	}
	return s
}

// replaceFold is strings.ReplaceAll matching old without regard to ASCII
// case. ASCII folding keeps every byte offset, so indexes found in the
// folded copy hold in s.
func replaceFold(s, old, repl string) string {
	if old == "" {
		return s
	}
	ls, lo := asciiLower(s), asciiLower(old)
	i := strings.Index(ls, lo)
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteString(repl)
		s, ls = s[i+len(old):], ls[i+len(old):]
		i = strings.Index(ls, lo)
	}
	b.WriteString(s)
	return b.String()
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// ScrubBytes replaces every form of each secret in b (matched without
// regard to ASCII case) with Redacted, and says how many it replaced. b is
// returned as is when it holds none (the common case, found without
// copying b: a raw answer can be tens of megabytes); it is never changed in
// place. A secret inside a JSON string stays a valid JSON string.
func ScrubBytes(b []byte, secrets ...string) ([]byte, int) {
	forms := secretForms(secrets)
	if len(forms) == 0 || len(b) == 0 {
		return b, 0
	}
	n := 0
	for _, f := range forms {
		n += countFold(b, asciiLower(f))
	}
	if n == 0 {
		return b, 0
	}
	return []byte(redact(string(b), forms)), n
}

// countFold counts the non-overlapping occurrences of lf (lower case) in b,
// without regard to ASCII case, in one pass: it jumps between occurrences of
// lf's first byte in either case, each found with bytes.IndexByte.
func countFold(b []byte, lf string) int {
	if lf == "" || len(lf) > len(b) {
		return 0
	}
	lo := lf[0]
	up := lo
	if 'a' <= lo && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	// next occurrence of each first-byte variant at or after i; -1: none left.
	nextLo, nextUp := -2, -2
	find := func(c byte, from int) int {
		if j := bytes.IndexByte(b[from:], c); j >= 0 {
			return from + j
		}
		return -1
	}
	n := 0
	for i := 0; i+len(lf) <= len(b); {
		if nextLo != -1 && nextLo < i {
			nextLo = find(lo, i)
		}
		if up != lo && nextUp != -1 && nextUp < i {
			nextUp = find(up, i)
		}
		j := nextLo
		if up != lo && nextUp >= 0 && (j < 0 || nextUp < j) {
			j = nextUp
		}
		if j < 0 || j+len(lf) > len(b) {
			break
		}
		if equalFoldLower(b[j:j+len(lf)], lf) {
			n++
			i = j + len(lf)
		} else {
			i = j + 1
		}
	}
	return n
}

// equalFoldLower reports whether b equals lf (lower case) without regard
// to ASCII case.
func equalFoldLower(b []byte, lf string) bool {
	for k := range len(lf) {
		c := b[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lf[k] {
			return false
		}
	}
	return true
}
