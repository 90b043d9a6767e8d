package pgstore

import "errors"

// ErrConfig marks errors of the configuration (a bad database URL, a
// refused login, a missing or wrong token key): the command exits 2, having
// written nothing. Every *Error whose Problem is one of those matches it.
var ErrConfig = errors.New("configuration")

// Problem is the kind of fix an error needs. This package says what went
// wrong in its own terms; the command turns a Problem into its own words
// (the variable to set, the command to run, the page to read).
type Problem int

// The problems a person can fix.
const (
	ProblemOther Problem = iota
	BadURL               // the database URL does not parse
	LoginRefused         // the server refused the login
	NoDatabase           // the database named in the URL does not exist
	NoPrivilege          // the role lacks a grant
	Unreachable          // the server did not answer in time
	NoSchema             // the database was never migrated by syncer
	KeyRequired          // no token key, and plain-text tokens were not chosen
	KeyNotWanted         // a key is configured, but the vault was set up in plain text
	KeyMissing           // the vault's tokens are sealed, and no key is configured
	WrongKey             // not the key the vault's tokens were sealed with
	KeyChanged           // the vault was re-keyed since this process started
)

func (p Problem) config() bool {
	switch p {
	case BadURL, LoginRefused, NoDatabase, KeyRequired, KeyNotWanted, KeyMissing, WrongKey, KeyChanged:
		return true
	}
	return false
}

// Error is a failure of this package a person can act on. Its text is what
// was being done and what went wrong (the server's message included, the
// password never); Problem says which fix it needs.
type Error struct {
	Op      string // what was being done; "" for a problem of the configuration itself
	Msg     string
	Problem Problem
	err     error
}

func (e *Error) Error() string {
	if e.Op == "" {
		return "pgstore: " + e.Msg
	}
	return "pgstore: " + e.Op + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.err }

// Is makes a configuration problem match ErrConfig.
func (e *Error) Is(target error) bool { return target == ErrConfig && e.Problem.config() }

// configError is a problem of the configuration, before anything was done.
func configError(p Problem, msg string) error { return &Error{Msg: msg, Problem: p} }
