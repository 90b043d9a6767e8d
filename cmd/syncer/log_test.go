package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The log backstop cleans every value that is text, errors logged as they
// are included, of the configured secrets.
func TestLogBackstopCleansErrorValues(t *testing.T) {
	const secret = "CANARY-db-password-0c4e"
	var buf bytes.Buffer
	log := newLogger(&buf, "info", "text", []string{secret})
	err := fmt.Errorf("notify command: exit status 3: SYNCER_DATABASE_URL=postgres://u:%s@db/x", secret)
	log.Warn("delivery failed", "error", err, "detail", "pw="+secret, "wrapped", errors.Join(err))
	if out := buf.String(); strings.Contains(out, secret) || !strings.Contains(out, "delivery failed") {
		t.Fatalf("log line = %q: want it without the secret", out)
	}
}

// The database password, in SYNCER_DATABASE_URL or PGPASSWORD, is one of
// the secrets the backstop knows.
func TestDatabasePasswordIsASecret(t *testing.T) {
	t.Setenv("PGPASSWORD", "CANARY-pgpassword-env-77")
	c := Config{DatabaseURL: "postgres://syncer:CANARY-url-password-88@db.example/syncer"}
	got := strings.Join(c.secrets(), "\n")
	for _, want := range []string{"CANARY-pgpassword-env-77", "CANARY-url-password-88"} {
		if !strings.Contains(got, want) {
			t.Errorf("secrets() lacks %s", want)
		}
	}
}
