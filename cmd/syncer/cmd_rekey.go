package main

import (
	"fmt"
	"os"

	"github.com/syncerhq/syncer/store"
)

// cmdRekey changes the token key of tokens.db: every token is re-sealed
// with the new key in one transaction. The current key comes from the usual
// place (SYNCER_TOKEN_KEY_FILE or the token-key credential); none means the
// vault is plain text and -new-key turns encryption on.
func cmdRekey(e env, args []string) error {
	fs := newFlagSet("rekey", e)
	newKeyFile := fs.String("new-key", "", "file with the new key (64 hex digits or 32 raw bytes, mode 0600)")
	remove := fs.Bool("remove", false, "store the tokens in plain text (tokens.db stays 0600) and drop the key")
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("rekey takes no arguments (-new-key FILE or -remove)")
	}
	if (*newKeyFile == "") == !*remove {
		return usagef("rekey needs one of -new-key FILE or -remove")
	}
	var newKey []byte
	if *newKeyFile != "" {
		b, err := readKeyFile(*newKeyFile, os.Getenv("CREDENTIALS_DIRECTORY"))
		if err != nil {
			return fmt.Errorf("%w: -new-key: %w", errConfig, err)
		}
		if newKey, err = parseKey(b); err != nil {
			return fmt.Errorf("%w: -new-key %s: %w (%s)", errConfig, *newKeyFile, err, keyHint)
		}
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	// Hold every connection's lock: a sync under way (the daemon's, a
	// -once) reads and saves its token under it, so none is half-way
	// through with the old key while the tokens are re-sealed.
	conns, err := a.store.Connections(e.ctx)
	if err != nil {
		return err
	}
	for _, c := range conns {
		unlock, err := a.store.LockConnection(e.ctx, c.ID, a.cfg.LockTimeout)
		if err != nil {
			return err
		}
		defer unlock()
	}
	n, err := a.store.Rekey(e.ctx, newKey)
	if err != nil {
		return err
	}
	if a.cfg.usesPostgres() { // issue 16: the vault is schema vault of the database
		if newKey == nil {
			fmt.Fprintf(e.stdout, "vault.token: %d connections' tokens are now stored unsealed.\n"+
				"On every instance: unset SYNCER_TOKEN_KEY_FILE, set SYNCER_DATABASE_PLAINTEXT_TOKENS=true, and restart it:\n"+
				"an instance still holding the old key refuses to save tokens until it is restarted.\n", n)
			return nil
		}
		fmt.Fprintf(e.stdout, "vault.token: %d connections' tokens re-sealed with the key in %s; the old key is no longer needed.\n"+
			"On every instance: set SYNCER_TOKEN_KEY_FILE=%s (a copy of it; unset SYNCER_DATABASE_PLAINTEXT_TOKENS) and restart it:\n"+
			"an instance still holding the old key refuses to save tokens until it is restarted.\n", n, *newKeyFile, *newKeyFile)
		return nil
	}
	if newKey == nil {
		fmt.Fprintf(e.stdout, "%s: %d connections' tokens are now stored in plain text (the file stays 0600).\n"+
			"Unset SYNCER_TOKEN_KEY_FILE (and remove the token-key credential), then restart the service.\n", store.TokensFile, n)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s: %d connections' tokens re-sealed with the key in %s; the old key is no longer needed.\n"+
		"Now set SYNCER_TOKEN_KEY_FILE=%s (or install it as the token-key credential) and restart the service:\n"+
		"a syncer still holding the old key refuses to save tokens until it is restarted.\n", store.TokensFile, n, *newKeyFile, *newKeyFile)
	return nil
}
