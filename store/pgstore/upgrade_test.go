package pgstore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore/pgtest"
	"github.com/syncerhq/syncer/store/seal"
)

// sealV1 seals as pgstore did before version 4: gcm1, bound to row and
// column only.
func sealV1(t *testing.T, key []byte, connID int64, column, plain string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	out := aead.Seal(nonce, nonce, []byte(plain), seal.AdditionalData(seal.PrefixV1, connID, column, ""))
	return seal.PrefixV1 + base64.RawStdEncoding.EncodeToString(out)
}

// TestUpgradeFromVersion2 opens a database left by the syncer before
// operations and security (migrations 1 and 2, gcm1 tokens): the migration
// adds the new columns, table and views, gives each token its connection's
// base URL, and the first start with the key re-seals the tokens as gcm2,
// bound to that URL; they open, and a changed vault base_url no longer does.
func TestUpgradeFromVersion2(t *testing.T) {
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE public.schema_migrations (version integer PRIMARY KEY,
		name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range mustVersions()[:2] {
		if _, err := conn.Exec(ctx, m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO public.schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			t.Fatal(err)
		}
	}
	const url = "http://127.0.0.1:1"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO connection (id, name, provider, base_url, state, created_at, updated_at)
		  VALUES (1, 'eg', 'estateguru', $1, 'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z'),
		         (2, 'gone', 'estateguru', $1, 'reauth_required', '2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z')`, []any{url}},
		{"INSERT INTO connection_lease (connection_id) VALUES (1), (2)", nil},
		{"INSERT INTO vault.meta (key, value) VALUES ('key_check', $1)", []any{sealV1(t, key, 0, "key_check", keyCheckPlain)}},
		{`INSERT INTO vault.token (connection_id, refresh_token, access_token, updated_at)
		  VALUES (1, $1, $2, '2026-11-01T00:00:00Z')`, []any{sealV1(t, key, 1, "refresh_token", "r1"), sealV1(t, key, 1, "access_token", "a1")}},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}

	// The reporting grants, applied at version 2 as docs/postgres.md says:
	// the views migration 3 re-creates keep them (default privileges).
	admin := pgtest.AdminURL(t, dbURL)
	b := make([]byte, 4)
	rand.Read(b)
	role := "reporting_" + hex.EncodeToString(b)
	pgtest.Exec(t, admin, "CREATE ROLE "+role+" LOGIN PASSWORD 'reporting-pw'")
	t.Cleanup(func() { pgtest.Exec(t, admin, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	grants, err := os.ReadFile("grants.sql")
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, dbURL, strings.ReplaceAll(string(grants), "syncer_reporting", role))

	s, err := Open(ctx, dbURL, Options{TokenKey: key})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	tok, err := s.Token(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Token.Refresh.Reveal() != "r1" || tok.Token.Access.Reveal() != "a1" || tok.BaseURL != url {
		t.Fatalf("token after the upgrade: refresh %q, access %q, base_url %q", tok.Token.Refresh.Reveal(), tok.Token.Access.Reveal(), tok.BaseURL)
	}
	var raw string
	if err := conn.QueryRow(ctx, "SELECT refresh_token || access_token FROM vault.token").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "gcm1:") || !strings.HasPrefix(raw, "gcm2:") {
		t.Fatalf("tokens not re-sealed as gcm2: %.60s", raw)
	}
	conns, err := s.Connections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !conns[0].StateSince.IsZero() || conns[1].StateSince.Format(store.TimeFormat) != "2026-11-02T00:00:00Z" {
		t.Fatalf("state_since after the upgrade: %v, %v", conns[0].StateSince, conns[1].StateSince)
	}
	rep, err := pgx.Connect(ctx, pgtest.WithUser(dbURL, role, "reporting-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close(ctx)
	for _, q := range []string{"SELECT state_since FROM connections", "SELECT connections_skipped, connections_warned, instance FROM sync_runs",
		"SELECT * FROM notify_state"} {
		if _, err := rep.Exec(ctx, q); err != nil {
			t.Errorf("the reporting role after the upgrade: %s: %v", q, err)
		}
	}
	if rc, err := ReadConnections(ctx, pgtest.WithUser(dbURL, role, "reporting-pw")); err != nil || len(rc) != 2 || rc[1].State != store.StateReauthRequired {
		t.Errorf("ReadConnections as the reporting role = %+v, %v", rc, err)
	}
	if _, err := conn.Exec(ctx, "UPDATE vault.token SET base_url = 'http://192.0.2.2:1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(ctx, 1); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("a token whose vault base_url changed: err = %v, want it not to open", err)
	}
}
