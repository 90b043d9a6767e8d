// Package seal encrypts token columns with AES-256-GCM, each value bound to
// its connection, column and provider URL. Both stores use it (SQLite's
// tokens.db and PostgreSQL's vault schema), so the format is one, and a
// value copied from one to the other (`syncer copy`) opens in both.
//
// A sealed value is a prefix naming what its additional data holds, then the
// base64 of nonce and ciphertext:
//
//	gcm2:  connection id, column and provider URL (what Seal writes)
//	gcm1:  connection id and column only (written by older versions; read,
//	       and re-sealed as gcm2 by the stores the first time the key is used)
//
// Anything without a prefix is plain text, which a store keeps when no key is
// configured (the vault is then protected by its file mode or grants only).
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The prefixes of sealed values.
const (
	PrefixV1 = "gcm1:"
	Prefix   = "gcm2:"
)

// KeyCheck is the plain text the stores seal into their metadata under
// "key_check", so a wrong key is caught at open, before any token is read
// or, worse, overwritten.
const KeyCheck = "syncer token key check"

// Errors of Open, wrapped with the column and connection they are about.
var (
	// ErrNoKey: the value is sealed, and there is no cipher to open it.
	ErrNoKey = errors.New("encrypted, but no token key is configured")
	// ErrNotSealed: plain text where a key is configured.
	ErrNotSealed = errors.New("not encrypted although a token key is set")
	// ErrDamaged: not the shape a sealed value has.
	ErrDamaged = errors.New("damaged")
	// ErrWrongKey: authentication failed: another key, or the value was
	// moved to another row, column or provider URL.
	ErrWrongKey = errors.New("does not open with the configured token key (or its provider URL was changed)")
)

// Cipher seals and opens values. A nil *Cipher stores and reads plain text.
type Cipher struct{ aead cipher.AEAD }

// New makes a cipher from a 32-byte AES-256 key.
func New(key []byte) (*Cipher, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the token key must be 32 bytes (AES-256), got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Cipher{aead: aead}, nil
}

// AdditionalData is what a value with prefix is bound to.
func AdditionalData(prefix string, connID int64, column, baseURL string) []byte {
	a := strconv.FormatInt(connID, 10) + "/" + column
	if prefix == PrefixV1 {
		return []byte(a)
	}
	return []byte(a + "/" + baseURL)
}

// Version returns the prefix of a sealed value, or "" for plain text.
func Version(stored string) string {
	for _, p := range []string{Prefix, PrefixV1} {
		if strings.HasPrefix(stored, p) {
			return p
		}
	}
	return ""
}

// Seal seals plain for its row, column and provider URL. A nil cipher, or
// an empty value, returns plain unchanged.
func (c *Cipher) Seal(connID int64, column, baseURL, plain string) (string, error) {
	if c == nil || plain == "" {
		return plain, nil
	}
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := c.aead.Seal(nonce, nonce, []byte(plain), AdditionalData(Prefix, connID, column, baseURL))
	return Prefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open returns the plain text of a stored value, sealed (gcm1 or gcm2) or
// plain. Its errors wrap ErrNoKey, ErrNotSealed, ErrDamaged or ErrWrongKey,
// and never hold the value.
func (c *Cipher) Open(connID int64, column, baseURL, stored string) (string, error) {
	prefix := Version(stored)
	if prefix == "" {
		if c != nil && stored != "" {
			return "", fmt.Errorf("%s of connection %d is %w", column, connID, ErrNotSealed)
		}
		return stored, nil
	}
	if c == nil {
		return "", fmt.Errorf("%s of connection %d is %w", column, connID, ErrNoKey)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(stored, prefix))
	if err != nil || len(raw) < c.aead.NonceSize() {
		return "", fmt.Errorf("%s of connection %d is %w", column, connID, ErrDamaged)
	}
	plain, err := c.aead.Open(nil, raw[:c.aead.NonceSize()], raw[c.aead.NonceSize():], AdditionalData(prefix, connID, column, baseURL))
	if err != nil {
		return "", fmt.Errorf("%s of connection %d %w", column, connID, ErrWrongKey)
	}
	return string(plain), nil
}
