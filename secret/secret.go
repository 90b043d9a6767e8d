// Package secret is the leaf that the providers, the sync loop and the
// store share: secrets that never print, and the tokens made of them. It
// imports nothing of syncer's, so the store need not import a provider
// package to keep a token.
package secret

import (
	"fmt"
	"log/slog"
	"time"
)

// Redacted is what a Secret prints as, in every format.
const Redacted = "[REDACTED]"

// Secret is a token, password or client secret. It prints, logs and marshals
// as [REDACTED] whatever verb or encoder is used; Reveal is the only way to
// the value, and is called only where the value goes on the wire or into the
// vault.
type Secret string

// Reveal returns the secret's value. Call it only to send it to the provider
// or to store it in the vault.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// Format keeps every fmt verb (%s, %v, %q, %x, %d...) from printing the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue keeps slog from logging the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps encoding/json from writing the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText keeps text encoders (and encoding/json map keys) from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Token is what a grant returns: the access token, the refresh token to use
// next time, and when each dies. A zero time means the provider did not say.
type Token struct {
	Access           Secret
	Refresh          Secret
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
}

// Secrets lists the token's non-empty secret values, for scrubbing text.
func (t Token) Secrets() []string {
	var out []string
	for _, s := range []Secret{t.Access, t.Refresh} {
		if s != "" {
			out = append(out, s.Reveal())
		}
	}
	return out
}
