package everreal

import (
	"encoding/json"
	"errors"
	"net/url"
	"sort"
	"strings"
	"unicode"

	"syncer/sync/provider"
)

// minTail is the shortest cut-off piece of a secret that scrub removes from
// the end of a truncated description. Shorter pieces would match ordinary
// words and say next to nothing about the secret.
const minTail = 4

// scrub removes the secrets just sent from err's text. provider.Classify
// quotes the provider's error_description, and a provider that echoes the
// request (the JSON body, the revoke URL) would otherwise put a password or
// token into a log line. It edits the *provider.Error in place: every error it
// is given was made for this call.
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
		if !leaks(err.Error(), forms) {
			return err
		}
		return &provider.Error{Provider: Name, Kind: provider.KindUnknown, Err: errors.New(redact(err.Error(), forms))}
	}
	pe.Code = redact(pe.Code, forms)
	pe.Description = redact(pe.Description, forms)
	if pe.Err != nil && leaks(pe.Err.Error(), forms) {
		pe.Err = errors.New(redact(pe.Err.Error(), forms))
	}
	return err
}

// secretForms lists each secret as it may come back: raw, JSON-escaped,
// query-escaped, and with non-printable runes blanked as provider's text
// cleaning does. Longest first, so a secret that contains another is
// replaced whole.
func secretForms(secrets []string) []string {
	seen := map[string]bool{}
	var forms []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			forms = append(forms, s)
		}
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		add(s)
		if b, err := json.Marshal(s); err == nil {
			add(string(b[1 : len(b)-1]))
		}
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		add(strings.Map(func(r rune) rune {
			if unicode.IsPrint(r) {
				return r
			}
			return ' '
		}, s))
	}
	sort.Slice(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return forms
}

func leaks(s string, forms []string) bool {
	return redact(s, forms) != s
}

func redact(s string, forms []string) string {
	if s == "" {
		return s
	}
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, provider.Redacted)
	}
	// provider's cleanText cuts long descriptions and appends "…": the cut
	// may have kept only the start of a secret.
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
