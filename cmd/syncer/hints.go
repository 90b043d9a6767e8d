package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore"
	"github.com/syncerhq/syncer/sync"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// hintedError is an error with what a person can do about it. The lower
// layers say what went wrong, typed and in their own terms; only the
// command knows its commands and variables, so the remedy is added here, at
// the edge (litestream's usageError{message, hint} does the same).
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintedError) Unwrap() error { return e.err }

// withHint returns err with the remedy for the kind of error it is, or err
// as it is when there is none (or it has one already).
func withHint(err error) error {
	var he *hintedError
	if err == nil || errors.As(err, &he) {
		return err
	}
	if hint := hintFor(err); hint != "" {
		return &hintedError{err: err, hint: hint}
	}
	return err
}

func hintFor(err error) string {
	var (
		nc *sync.NotConfiguredError
		fe *store.FileError
		be *sync.BaseURLError
		pe *pgstore.Error
	)
	switch {
	case errors.As(err, &be):
		return baseURLHint(be)
	case errors.Is(err, store.ErrUnsafeParent):
		return "SYNCER_DATA_DIR"
	case errors.As(err, &nc):
		v := "SYNCER_" + strings.ToUpper(nc.Provider)
		return "set " + v + "_CLIENT_ID and " + v + "_CLIENT_SECRET"
	case errors.Is(err, store.ErrNoToken):
		return "run `syncer connect` or `syncer import` for it"
	case errors.Is(err, sync.ErrTokenKept):
		return "if syncer stops before that, the connection may need `syncer connect` again"
	case provider.KindOf(err) == provider.KindReauth:
		return "run `syncer connect` for this connection again"
	case errors.Is(err, provider.ErrNoAnswer):
		return "SYNCER_HTTP_TIMEOUT"
	case errors.Is(err, store.ErrLockTimeout):
		return "raise SYNCER_LOCK_TIMEOUT, or let the other run finish"
	case errors.Is(err, sync.ErrNoConnection):
		return "see `syncer status`"
	case errors.Is(err, store.ErrNotFound):
		return "see `syncer status` for the names"
	case errors.Is(err, store.ErrNoDatabase):
		return "run `syncer -once` (or `syncer demo`) first, or set SYNCER_DATA_DIR"
	case errors.Is(err, store.ErrNoTokenKey):
		return "set SYNCER_TOKEN_KEY_FILE (or the systemd credential token-key) to the key the tokens were sealed with"
	case errors.As(err, &fe):
		return fileHint(fe)
	case errors.As(err, &pe):
		_, hint := postgresHint(pe.Problem)
		return hint
	}
	return ""
}

// postgresHint is the variable a PostgreSQL problem is about ("" when it
// is none in particular) and what to do about it.
func postgresHint(p pgstore.Problem) (variable, hint string) {
	switch p {
	case pgstore.BadURL:
		return "SYNCER_DATABASE_URL", "try postgres://USER@HOST:5432/DB?sslmode=verify-full, password in ~/.pgpass or PGPASSWORD"
	case pgstore.LoginRefused:
		return "SYNCER_DATABASE_URL", "check the user, and the password in ~/.pgpass or PGPASSWORD"
	case pgstore.NoDatabase:
		return "SYNCER_DATABASE_URL", "create it first; see docs/postgres.md"
	case pgstore.NoPrivilege:
		return "", "the role in SYNCER_DATABASE_URL lacks a privilege; see docs/postgres.md for the grants"
	case pgstore.Unreachable:
		return "", "is the server in SYNCER_DATABASE_URL up and reachable?"
	case pgstore.NoSchema:
		return "", "run syncer once with its own SYNCER_DATABASE_URL to migrate it"
	case pgstore.KeyRequired:
		return "SYNCER_TOKEN_KEY_FILE", "make a key with: head -c 32 /dev/urandom | xxd -p -c 64 > token.key; every instance needs the same one; or set SYNCER_DATABASE_PLAINTEXT_TOKENS=true"
	case pgstore.KeyNotWanted:
		return "SYNCER_TOKEN_KEY_FILE", "the database was set up with SYNCER_DATABASE_PLAINTEXT_TOKENS: configure every instance alike"
	case pgstore.KeyMissing:
		return "SYNCER_TOKEN_KEY_FILE", "set it (or the systemd credential token-key) to the key the tokens were sealed with"
	case pgstore.WrongKey:
		return "SYNCER_TOKEN_KEY_FILE", "use the original key file (syncer rekey changes the key)"
	case pgstore.KeyChanged:
		return "", "restart syncer with the new SYNCER_TOKEN_KEY_FILE (or SYNCER_DATABASE_PLAINTEXT_TOKENS, if the key was removed)"
	}
	return "", ""
}

// fileHint is what to do about a file the store could not use.
func fileHint(fe *store.FileError) string {
	switch fe.Problem {
	case store.ProblemDamaged:
		if strings.HasSuffix(fe.Path, store.TokensFile) {
			return "the file is damaged: restore it from a backup; without it every connection must be connected again (syncer connect); snapshots.db is untouched"
		}
		return "the file is damaged: restore it from a backup (syncer backup makes them); moved aside, syncer starts an empty one and every connection must be connected again; tokens.db is untouched"
	case store.ProblemNotWritable:
		return "syncer cannot write there: check the owner and mode of the data directory (SYNCER_DATA_DIR)"
	case store.ProblemDiskFull:
		return "the disk is full: free space and run again"
	}
	return ""
}

// reconnectCommand is the command that brings a connection back after its
// provider refused the stored login.
func reconnectCommand(c store.Connection) string {
	switch c.Provider {
	case everreal.Name:
		return fmt.Sprintf("syncer connect everreal -name %s -url %s -username EMAIL", c.Name, c.BaseURL)
	case estateguru.Name:
		return fmt.Sprintf("syncer connect estateguru -name %s -url %s", c.Name, c.BaseURL)
	}
	return fmt.Sprintf("syncer connect %s -name %s", c.Provider, c.Name)
}

// baseURLHint is what to do about a connection refused for its base URL.
func baseURLHint(e *sync.BaseURLError) string {
	c := e.Connection
	reconnect := fmt.Sprintf("syncer connect %s -name %s -url URL (or syncer import)", c.Provider, c.Name)
	switch e.Problem {
	case sync.BaseURLUnbound:
		return fmt.Sprintf("re-connect: syncer connect %s -name %s (or syncer import)", c.Provider, c.Name)
	case sync.BaseURLMoved:
		return "set it back, or if the provider really moved, re-connect: " + reconnect
	}
	return "if the provider really moved, re-connect: " + reconnect
}
