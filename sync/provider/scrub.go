package provider

import (
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

func redact(s string, forms []string) string {
	if s == "" {
		return s
	}
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, Redacted)
	}
	// CleanText cuts long descriptions and appends "…": the cut may have
	// kept only the start of a secret.
	const ellipsis = "…"
	if body, ok := strings.CutSuffix(s, ellipsis); ok {
		for _, f := range forms {
			for k := len(f) - 1; k >= minTail; k-- {
				if strings.HasSuffix(body, f[:k]) {
					return body[:len(body)-k] + Redacted + ellipsis
				}
			}
		}
	}
	return s
}
