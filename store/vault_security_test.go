package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/secret"
	"github.com/syncerhq/syncer/store/seal"
)

func testKey(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i*7)
	}
	return k
}

// A version-1 vault takes each connection's current base URL once; its
// gcm1 values are re-sealed with the URL in their additional data.
func TestVaultMigrationBindsBaseURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := testKey(1)
	s, err := Open(ctx, dir, Options{TokenKey: key})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Connect(ctx, "eg", "estateguru", "https://eg.example", secret.Token{Refresh: "r-canary", Access: "a-canary"})
	if err != nil {
		t.Fatal(err)
	}
	// Make it a version-1 vault: no base_url, values sealed as gcm1.
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	seal1 := func(col, plain string) string {
		nonce := bytes.Repeat([]byte{3}, aead.NonceSize())
		out := aead.Seal(nonce, nonce, []byte(plain), seal.AdditionalData(seal.PrefixV1, c.ID, col, ""))
		return seal.PrefixV1 + b64(out)
	}
	for _, q := range []string{
		"ALTER TABLE token DROP COLUMN base_url",
		"PRAGMA user_version = 1",
	} {
		if _, err := s.tokens.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.tokens.Exec("UPDATE token SET refresh_token = ?, access_token = ?", seal1("refresh_token", "r-canary"), seal1("access_token", "a-canary")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, dir, Options{TokenKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok, err := s.Token(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.BaseURL, "https://eg.example"; got != want {
		t.Fatalf("BaseURL = %q, want %q", got, want)
	}
	if tok.Refresh.Reveal() != "r-canary" || tok.Access.Reveal() != "a-canary" {
		t.Fatal("tokens changed in the migration")
	}
	if n := count(t, s.tokens.DB, "SELECT count(*) FROM token WHERE refresh_token LIKE 'gcm2:%' AND access_token LIKE 'gcm2:%'"); n != 1 {
		t.Fatalf("gcm2 rows = %d, want 1", n)
	}
	if n := count(t, s.tokens.DB, "PRAGMA user_version"); n != vaultVersion {
		t.Fatalf("user_version = %d, want %d", n, vaultVersion)
	}

	// The base URL is in the additional data: changed in tokens.db, the
	// tokens no longer open.
	if _, err := s.tokens.Exec("UPDATE token SET base_url = 'http://127.0.0.1:1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(ctx, c.ID); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("Token after changing base_url in tokens.db: %v, want a refusal", err)
	}
}

// A refresh keeps the vault's base URL; a re-connect replaces it.
func TestSaveTokenKeepsVaultBaseURL(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	id := connect(t, s, "er", "everreal")
	if _, err := s.snapshots.Exec("UPDATE connection SET base_url = 'http://192.0.2.2:18081'"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveToken(ctx, id, secret.Token{Refresh: "r2"}); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.BaseURL, "https://er.example"; got != want {
		t.Fatalf("BaseURL after a refresh = %q, want %q", got, want)
	}
	if _, err := s.Connect(ctx, "er", "everreal", "https://new.example", secret.Token{Refresh: "r3"}); err != nil {
		t.Fatal(err)
	}
	if tok, _ = s.Token(ctx, id); tok.BaseURL != "https://new.example" {
		t.Fatalf("BaseURL after a re-connect = %q", tok.BaseURL)
	}
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// After a rekey, a process still holding the old key refuses to save
// tokens (they would be sealed with a key the vault no longer has).
func TestRekeyStopsSavesWithTheOldKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s1, err := Open(ctx, dir, Options{TokenKey: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	id := connect(t, s1, "eg", "estateguru")
	s2, err := Open(ctx, dir, Options{TokenKey: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n, err := s2.Rekey(ctx, testKey(2)); err != nil || n != 1 {
		t.Fatalf("Rekey = %d, %v", n, err)
	}
	if err := s1.SaveToken(ctx, id, secret.Token{Refresh: "r-new"}); !errors.Is(err, ErrTokenKey) {
		t.Fatalf("SaveToken with the old key = %v, want ErrTokenKey", err)
	}
	tok, err := s2.Token(ctx, id)
	if err != nil || tok.Refresh.Reveal() != "r-eg" {
		t.Fatalf("Token after rekey = %v, %v", tok.Refresh.Reveal(), err)
	}
	if _, err := Open(ctx, dir, Options{TokenKey: testKey(1)}); !errors.Is(err, ErrTokenKey) {
		t.Fatalf("Open with the old key = %v, want ErrTokenKey", err)
	}
}
