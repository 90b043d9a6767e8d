// Package pgtest gives tests a fresh PostgreSQL database of their own on the
// server named by SYNCER_TEST_DATABASE_URL (.ci/postgres starts one).
//
// Without that variable the tests skip, with a message saying how to run
// them, except under CI (CI set to anything but "" or "false"), where they
// fail: CI must never pass by skipping them. Every test that gets a
// database appends its name to the file SYNCER_TEST_PG_MARKER names, if
// set, so .ci/run can check they ran.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URL returns a URL of a database for this test alone, dropped when the test
// ends, or skips (fails under CI) when no server is configured.
//
// With SYNCER_TEST_DATABASE_ADMIN_URL (a role that may create databases)
// each test gets a new database owned by the role of
// SYNCER_TEST_DATABASE_URL. Without it, the database of
// SYNCER_TEST_DATABASE_URL is emptied for the test: such tests must not run
// in parallel.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("SYNCER_TEST_DATABASE_URL")
	if base == "" {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" {
			t.Fatal("CI is set but SYNCER_TEST_DATABASE_URL is not: the PostgreSQL tests must run in CI (run them through .ci/postgres, as .ci/run does)")
		}
		t.Skip("PostgreSQL test skipped: SYNCER_TEST_DATABASE_URL is not set (run `.ci/postgres go test ./...` to start a throwaway server)")
	}
	mark(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := os.Getenv("SYNCER_TEST_DATABASE_ADMIN_URL")
	if admin == "" {
		reset(ctx, t, base)
		return base
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("SYNCER_TEST_DATABASE_URL: %v", err)
	}
	owner := u.User.Username()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	exec(ctx, t, admin, "CREATE DATABASE "+name+" OWNER "+pgx.Identifier{owner}.Sanitize())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		exec(ctx, t, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u.Path = "/" + name
	return u.String()
}

// AdminURL is the superuser URL for the same database as dbURL, or skips.
func AdminURL(t testing.TB, dbURL string) string {
	t.Helper()
	admin := os.Getenv("SYNCER_TEST_DATABASE_ADMIN_URL")
	if admin == "" {
		t.Skip("needs SYNCER_TEST_DATABASE_ADMIN_URL (a role that may create roles and databases)")
	}
	a, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := url.Parse(dbURL)
	a.Path = d.Path
	return a.String()
}

// WithUser is dbURL with another user and password.
func WithUser(dbURL, user, password string) string {
	u, _ := url.Parse(dbURL)
	u.User = url.UserPassword(user, password)
	return u.String()
}

// Exec runs SQL on the database at dbURL.
func Exec(t testing.TB, dbURL, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec(ctx, t, dbURL, sql)
}

func exec(ctx context.Context, t testing.TB, dbURL, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", strings.SplitN(sql, "\n", 2)[0], err)
	}
}

func reset(ctx context.Context, t testing.TB, dbURL string) {
	exec(ctx, t, dbURL, `DROP SCHEMA IF EXISTS vault CASCADE; DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public`)
}

func mark(t testing.TB) {
	path := os.Getenv("SYNCER_TEST_PG_MARKER")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatalf("SYNCER_TEST_PG_MARKER: %v", err)
	}
	defer f.Close()
	_, _ = f.WriteString(t.Name() + "\n")
}
