package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/syncerhq/syncer/store"
)

func cmdQuery(e env, args []string) error {
	fs := newFlagSet("query", e)
	format := fs.String("format", "table", "table, csv or json")
	timeout := fs.Duration("timeout", 30*time.Second, "stop the query after this long (its read transaction keeps the WAL from being truncated meanwhile); 0: no limit")
	csvRaw := fs.Bool("csv-raw", false, "CSV cells exactly as stored: no quote put before a cell starting with = + - @ tab or CR (for programs, not spreadsheets)")
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	switch *format {
	case "table", "csv", "json":
	default:
		return usagef("query: -format %q: use table, csv or json", *format)
	}
	if *timeout < 0 {
		return usagef("query: -timeout must not be negative (try 30s, or 0 for no limit)")
	}
	query := strings.Join(fs.Args(), " ")
	if strings.TrimSpace(query) == "" {
		const maxSQL = 1 << 20
		b, err := io.ReadAll(io.LimitReader(e.stdin, maxSQL+1))
		if err != nil {
			return fmt.Errorf("reading SQL from stdin: %w", err)
		}
		if len(b) > maxSQL {
			return usagef("query: the SQL on stdin is over 1 MiB")
		}
		query = string(b)
	}
	if strings.TrimSpace(query) == "" {
		return usagef("query needs SQL, as an argument or on stdin")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	// The deadline interrupts SQLite (sqlite3_interrupt) in the middle of a
	// statement, and PostgreSQL through a cancel request: an endless
	// recursive CTE ends, and with it the read transaction that kept the
	// WAL from being checkpointed (or held back VACUUM).
	ctx := e.ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var rows *sql.Rows
	if a.cfg.usesPostgres() { // issue 16
		r, done, err := a.queryPostgres(ctx, query)
		if errors.Is(err, errConfig) {
			return err
		}
		if err != nil {
			return queryError(ctx, *timeout, err)
		}
		defer done()
		rows = r
	} else {
		r, err := store.OpenReader(ctx, a.cfg.DataDir)
		if err != nil {
			return err
		}
		defer r.Close()
		// SQLite's own message, unedited: it names the table, column or token
		// that is wrong, and a refused write says "readonly database".
		rows, err = r.Query(ctx, query)
		if err != nil {
			return queryError(ctx, *timeout, err)
		}
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return fmt.Errorf("query: %v", err)
	}
	var w rowWriter
	switch *format {
	case "csv":
		w = &csvWriter{w: bufio.NewWriter(e.stdout), raw: *csvRaw}
	case "json":
		w = &jsonWriter{w: e.stdout}
	default:
		w = &tableWriter{w: newTabWriter(e.stdout)}
	}
	if err := writeRows(rows, cols, w); err != nil {
		return queryError(ctx, *timeout, err)
	}
	return nil
}

// queryError explains a query stopped by its -timeout.
func queryError(ctx context.Context, timeout time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("query: stopped after %s (-timeout; raise it, or 0 for no limit)", timeout)
	}
	if strings.HasPrefix(err.Error(), "query: ") {
		return err
	}
	return fmt.Errorf("query: %v", err)
}

// writeRows streams every row of rows through w.
func writeRows(rows *sql.Rows, cols []string, w rowWriter) error {
	if err := w.header(cols); err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("query: %v", err)
		}
		if err := w.row(cols, vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query: %v", err)
	}
	return w.end()
}

type rowWriter interface {
	header(cols []string) error
	row(cols []string, vals []any) error
	end() error
}

// text renders a value for table and CSV output; NULL is empty.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		if x {
			return "1"
		}
		return "0"
	}
	return fmt.Sprint(v)
}

type tableWriter struct{ w *tabwriter.Writer }

func (t *tableWriter) header(cols []string) error {
	_, err := fmt.Fprintln(t.w, strings.Join(cols, "\t"))
	return err
}

func (t *tableWriter) row(_ []string, vals []any) error {
	cells := make([]string, len(vals))
	for i, v := range vals {
		cells[i] = visible(text(v))
	}
	_, err := fmt.Fprintln(t.w, strings.Join(cells, "\t"))
	return err
}

// visible shows control characters as escapes (\t, \n, \x1b, \u202e): a
// provider's text must not move the cursor, recolour or retitle the
// terminal, or reorder what is shown (bidi controls); tabs and newlines
// would also break the alignment.
func visible(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !isControl(r):
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0xfffd ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

func (t *tableWriter) end() error { return t.w.Flush() }

// csvWriter writes RFC 4180: records end in CRLF; a field holding a comma,
// a quote, CR or LF is quoted, its quotes doubled. Unlike encoding/csv with
// UseCRLF, a newline inside a value is written as it is, not turned into
// CRLF: the value read back is the value stored.
//
// Unless raw, a text cell starting with = + - @ tab or CR gets a leading
// single quote: a spreadsheet would otherwise run it as a formula
// (=HYPERLINK(...) in a name a provider sent). Numbers are written as they
// are.
type csvWriter struct {
	w   *bufio.Writer
	raw bool
}

func (c *csvWriter) header(cols []string) error {
	rec := make([]string, len(cols))
	for i, col := range cols {
		rec[i] = c.neutral(col)
	}
	return c.record(rec)
}

func (c *csvWriter) row(_ []string, vals []any) error {
	rec := make([]string, len(vals))
	for i, v := range vals {
		switch v.(type) {
		case string, []byte:
			rec[i] = c.neutral(text(v))
		default:
			rec[i] = text(v)
		}
	}
	return c.record(rec)
}

func (c *csvWriter) neutral(s string) string {
	if c.raw || s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	return "'" + s
}

func (c *csvWriter) record(fields []string) error {
	for i, f := range fields {
		if i > 0 {
			c.w.WriteByte(',')
		}
		if !strings.ContainsAny(f, ",\"\r\n") {
			c.w.WriteString(f)
			continue
		}
		c.w.WriteByte('"')
		c.w.WriteString(strings.ReplaceAll(f, `"`, `""`))
		c.w.WriteByte('"')
	}
	_, err := c.w.WriteString("\r\n")
	return err
}

func (c *csvWriter) end() error { return c.w.Flush() }

type jsonWriter struct {
	w io.Writer
	n int
}

func (j *jsonWriter) header([]string) error { _, err := io.WriteString(j.w, "["); return err }

func (j *jsonWriter) row(cols []string, vals []any) error {
	var b strings.Builder
	if j.n > 0 {
		b.WriteString(",")
	}
	b.WriteString("\n  {")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(c)
		b.Write(k)
		b.WriteString(": ")
		v := vals[i]
		if bs, ok := v.([]byte); ok {
			v = string(bs)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.Write(enc)
	}
	b.WriteString("}")
	j.n++
	_, err := io.WriteString(j.w, b.String())
	return err
}

func (j *jsonWriter) end() error {
	if j.n > 0 {
		_, err := io.WriteString(j.w, "\n]\n")
		return err
	}
	_, err := io.WriteString(j.w, "]\n")
	return err
}

func cmdBackup(e env, args []string) error {
	fs := newFlagSet("backup", e)
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("backup takes one argument: the file to write")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if a.cfg.usesPostgres() { // issue 16
		return usagef("backup copies SQLite's snapshots.db; with SYNCER_DATABASE_URL use pg_dump (see docs/postgres.md)")
	}
	// Read-only, like query: it needs neither tokens.db nor write access,
	// and it never waits for, or holds up, a sync.
	size, err := store.Backup(e.ctx, a.cfg.DataDir, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "snapshots.db backed up to %s (%d bytes, checked; tokens.db is not included: back it up separately and keep it secret)\n", fs.Arg(0), size)
	return nil
}

func newTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
