package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSealedValuesOpenOnlyWhereTheyWereSealed(t *testing.T) {
	c, err := New(key(7))
	if err != nil {
		t.Fatal(err)
	}
	const canary = "refresh-canary-7f3a9c2e"
	sealed, err := c.Seal(1, "refresh_token", "https://a.example", canary)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealed, Prefix) || strings.Contains(sealed, canary) {
		t.Fatalf("sealed = %q: want the gcm2 prefix and no plain text", sealed)
	}
	if got, err := c.Open(1, "refresh_token", "https://a.example", sealed); err != nil || got != canary {
		t.Fatalf("Open = %q, %v; want the value back", got, err)
	}
	other, _ := New(key(8))
	for name, open := range map[string]func() (string, error){
		"another key":        func() (string, error) { return other.Open(1, "refresh_token", "https://a.example", sealed) },
		"another connection": func() (string, error) { return c.Open(2, "refresh_token", "https://a.example", sealed) },
		"another column":     func() (string, error) { return c.Open(1, "access_token", "https://a.example", sealed) },
		"another URL":        func() (string, error) { return c.Open(1, "refresh_token", "http://192.0.2.2", sealed) },
	} {
		if _, err := open(); !errors.Is(err, ErrWrongKey) || strings.Contains(err.Error(), canary) {
			t.Errorf("%s: err = %v, want ErrWrongKey without the value", name, err)
		}
	}
	var none *Cipher
	if _, err := none.Open(1, "refresh_token", "https://a.example", sealed); !errors.Is(err, ErrNoKey) {
		t.Errorf("no key: err = %v, want ErrNoKey", err)
	}
	if _, err := c.Open(1, "refresh_token", "", "plain-text"); !errors.Is(err, ErrNotSealed) || strings.Contains(err.Error(), "plain-text") {
		t.Errorf("plain with a key: err = %v, want ErrNotSealed without the value", err)
	}
	if _, err := c.Open(1, "refresh_token", "", Prefix+"!!"); !errors.Is(err, ErrDamaged) {
		t.Errorf("damaged: err = %v, want ErrDamaged", err)
	}
	if got, err := none.Seal(1, "refresh_token", "", "plain"); err != nil || got != "plain" {
		t.Errorf("nil cipher Seal = %q, %v; want plain text kept", got, err)
	}
}

func TestVersionOneValuesStillOpen(t *testing.T) {
	c, _ := New(key(7))
	nonce := make([]byte, c.aead.NonceSize())
	v1 := PrefixV1 + b64(c.aead.Seal(nonce, nonce, []byte("old"), AdditionalData(PrefixV1, 3, "access_token", "")))
	if got, err := c.Open(3, "access_token", "https://any.example", v1); err != nil || got != "old" {
		t.Fatalf("Open(v1) = %q, %v; want the value (v1 is not bound to the URL)", got, err)
	}
	if Version(v1) != PrefixV1 || Version("plain") != "" {
		t.Fatalf("Version misreads prefixes")
	}
}

func TestKeysMustBe32Bytes(t *testing.T) {
	if _, err := New(key(1)[:16]); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
