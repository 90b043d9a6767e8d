package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/syncerhq/syncer/store"
)

func cmdQuery(e env, args []string) error {
	fs := newFlagSet("query", e)
	format := fs.String("format", "table", "table, csv or json")
	if err := parseFlags(fs, e, args); err != nil {
		return err
	}
	switch *format {
	case "table", "csv", "json":
	default:
		return usagef("query: -format %q: use table, csv or json", *format)
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
	var rows *sql.Rows
	if a.cfg.usesPostgres() { // issue 16
		r, done, err := a.queryPostgres(e.ctx, query)
		if errors.Is(err, errConfig) {
			return err
		}
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		defer done()
		rows = r
	} else {
		r, err := store.OpenReader(e.ctx, a.cfg.DataDir)
		if err != nil {
			return err
		}
		defer r.Close()
		// SQLite's own message, unedited: it names the table, column or token
		// that is wrong, and a refused write says "readonly database".
		rows, err = r.Query(e.ctx, query)
		if err != nil {
			return fmt.Errorf("query: %v", err)
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
		w = &csvWriter{w: bufio.NewWriter(e.stdout)}
	case "json":
		w = &jsonWriter{w: e.stdout}
	default:
		w = &tableWriter{w: newTabWriter(e.stdout)}
	}
	return writeRows(rows, cols, w)
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
		// Tabs and newlines would break the alignment.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(text(v))
	}
	_, err := fmt.Fprintln(t.w, strings.Join(cells, "\t"))
	return err
}

func (t *tableWriter) end() error { return t.w.Flush() }

// csvWriter writes RFC 4180: records end in CRLF; a field holding a comma,
// a quote, CR or LF is quoted, its quotes doubled. Unlike encoding/csv with
// UseCRLF, a newline inside a value is written as it is, not turned into
// CRLF: the value read back is the value stored.
type csvWriter struct{ w *bufio.Writer }

func (c *csvWriter) header(cols []string) error { return c.record(cols) }

func (c *csvWriter) row(_ []string, vals []any) error {
	rec := make([]string, len(vals))
	for i, v := range vals {
		rec[i] = text(v)
	}
	return c.record(rec)
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
