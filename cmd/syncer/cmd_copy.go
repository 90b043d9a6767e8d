package main

// syncer copy -to postgres://... (issue 16): move a SQLite store into
// PostgreSQL.

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/store/pgstore"
)

func cmdCopy(e env, args []string) error {
	fs := newFlagSet("copy", e)
	to := fs.String("to", "", "postgres:// URL of the database to copy into (empty, or holding an earlier copy)")
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *to == "" {
		return usagef("copy takes -to postgres://USER@HOST/DB and nothing else")
	}
	if err := checkDatabaseURL(*to); err != nil {
		return usagef("copy -to: %s", strings.TrimPrefix(err.Error(), "SYNCER_DATABASE_URL: "))
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if a.cfg.usesPostgres() {
		return usagef("copy reads the SQLite store in SYNCER_DATA_DIR: unset SYNCER_DATABASE_URL for it")
	}
	if a.cfg.TokenKey == nil && !a.cfg.DatabasePlaintextTokens {
		return fmt.Errorf("%w: SYNCER_TOKEN_KEY_FILE: the tokens are sealed with it in PostgreSQL (the same key opens a sealed tokens.db; given for an unsealed one, it seals tokens.db too); or set SYNCER_DATABASE_PLAINTEXT_TOKENS=true", errConfig)
	}
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	reports, err := store.OpenReports(e.ctx, a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer reports.Close()
	a.cfg.DatabaseURL = *to
	dst, err := a.openPostgres(e.ctx)
	a.cfg.DatabaseURL = ""
	if err != nil {
		return err
	}
	defer dst.Close()

	last := ""
	counts, err := dst.Copy(e.ctx, pgstore.CopySource{Reports: reports, Token: a.store.Token}, func(table string, done, total int64) {
		if table != last && last != "" {
			fmt.Fprintln(e.stderr)
		}
		last = table
		fmt.Fprintf(e.stderr, "\rcopy: %-22s %d/%d", table, done, total)
	})
	if last != "" {
		fmt.Fprintln(e.stderr)
	}
	if err != nil {
		return fmt.Errorf("%w (what was copied stays; run the same command again to carry on)", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tSQLITE\tPOSTGRESQL")
	var bad []string
	for _, c := range counts {
		mark := ""
		if c.Source != c.Target {
			mark = "\tdiffers"
			bad = append(bad, c.Table)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d%s\n", c.Table, c.Source, c.Target, mark)
	}
	tw.Flush()
	if len(bad) > 0 {
		return attentionError{fmt.Sprintf("copy: row counts differ for %s (a sync ran meanwhile, or the target held other rows): run the copy again with syncer stopped", strings.Join(bad, ", "))}
	}
	fmt.Fprintln(e.stdout, "copy: verified, every table has the same row count; now set SYNCER_DATABASE_URL and start syncer")
	return nil
}
