package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/syncerhq/syncer/store"
)

func setupQuery(fs *flag.FlagSet) func(e env, args []string) error {
	var o queryOptions
	fs.StringVar(&o.format, "format", "table", "output `format`: table, csv or json")
	fs.BoolVar(&o.wide, "wide", false, "table: keep every cell whole, even wider than the terminal")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "stop the query after this `long` (its read transaction keeps the WAL from being truncated meanwhile); 0: no limit")
	fs.BoolVar(&o.csvRaw, "csv-raw", false, "CSV cells exactly as stored: no quote put before a cell starting with = + - @ tab or CR (for programs, not spreadsheets)")
	return func(e env, args []string) error { return query(e, args, o) }
}

// queryOptions are the query command's flags.
type queryOptions struct {
	format  string
	wide    bool
	timeout time.Duration
	csvRaw  bool
}

func query(e env, args []string, o queryOptions) error {
	switch o.format {
	case "table", "csv", "json":
	default:
		return usagef("query: -format %q: use table, csv or json", o.format)
	}
	if o.timeout < 0 {
		return usagef("query: -timeout must not be negative (try 30s, or 0 for no limit)")
	}
	query := strings.Join(args, " ")
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
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	var rows *sql.Rows
	if a.cfg.usesPostgres() { // issue 16
		r, done, err := a.queryPostgres(ctx, query)
		if errors.Is(err, errConfig) {
			return err
		}
		if err != nil {
			return queryError(ctx, o.timeout, err)
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
			return queryError(ctx, o.timeout, err)
		}
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return fmt.Errorf("query: %v", err)
	}
	var w rowWriter
	switch o.format {
	case "csv":
		w = &csvWriter{w: bufio.NewWriter(e.stdout), raw: o.csvRaw}
	case "json":
		w = &jsonWriter{w: e.stdout}
	default:
		w = newTableWriter(e.stdout, o.wide)
	}
	if err := writeRows(rows, cols, w); err != nil {
		return queryError(ctx, o.timeout, err)
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

// tableWriter aligns columns. With a width (a terminal's), it holds the
// rows and cuts the widest cells, with an ellipsis, until a line fits;
// without one it streams through a tabwriter.
type tableWriter struct {
	tw    *tabwriter.Writer // streaming, when width is 0
	out   io.Writer
	width int
	rows  [][]string
}

// newTableWriter fits the table to the terminal stdout is, unless wide.
func newTableWriter(w io.Writer, wide bool) *tableWriter {
	width := 0
	if !wide {
		width = terminalWidth(w)
	}
	if width > 0 {
		return &tableWriter{out: w, width: width}
	}
	return &tableWriter{tw: newTabWriter(w)}
}

// terminalWidth is the width of the terminal w is ($COLUMNS first), or 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	if n, _, err := term.GetSize(int(f.Fd())); err == nil && n > 0 {
		return n
	}
	return 0
}

func (t *tableWriter) header(cols []string) error { return t.line(cols) }

func (t *tableWriter) row(_ []string, vals []any) error {
	cells := make([]string, len(vals))
	for i, v := range vals {
		cells[i] = visible(text(v))
	}
	return t.line(cells)
}

func (t *tableWriter) line(cells []string) error {
	if t.tw == nil {
		t.rows = append(t.rows, cells)
		return nil
	}
	_, err := fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
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

func (t *tableWriter) end() error {
	if t.tw != nil {
		return t.tw.Flush()
	}
	widths := fitColumns(t.rows, t.width)
	bw := bufio.NewWriter(t.out)
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			c = cut(c, widths[i])
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		bw.WriteString(strings.TrimRight(b.String(), " "))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// fitColumns is each column's width, the widest narrowed one at a time
// (to no less than 6) until a line with two spaces between columns fits in
// width.
func fitColumns(rows [][]string, width int) []int {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	total := func() int {
		n := 2 * max(len(widths)-1, 0)
		for _, w := range widths {
			n += w
		}
		return n
	}
	for total() > width {
		widest := 0
		for i, w := range widths {
			if w > widths[widest] {
				widest = i
			}
		}
		if widths[widest] <= 6 {
			break
		}
		widths[widest]--
	}
	return widths
}

// cut shortens s to n runes, the last one an ellipsis.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

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

func setupBackup(fs *flag.FlagSet) func(e env, args []string) error {
	tokens := fs.String("tokens", "", "also copy tokens.db to this `file` (mode 0600; it holds the tokens: keep it secret)")
	return func(e env, args []string) error { return backup(e, args, *tokens) }
}

func backup(e env, args []string, tokensPath string) error {
	if len(args) != 1 {
		return usagef("backup takes one argument: the file (or directory/) to write")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if a.cfg.usesPostgres() { // issue 16
		return usagef("backup copies SQLite's snapshots.db; with SYNCER_DATABASE_URL use pg_dump (see docs/postgres.md)")
	}
	// Read-only, like query: it needs no write access, and it never waits
	// for, or holds up, a sync.
	path := backupPath(args[0], store.SnapshotsFile)
	size, err := store.Backup(e.ctx, a.cfg.DataDir, path)
	if err != nil {
		return err
	}
	if tokensPath == "" {
		fmt.Fprintf(e.stdout, "snapshots.db backed up to %s (%d bytes, checked; tokens.db is not included: copy it with -tokens FILE and keep that secret)\n", path, size)
		return nil
	}
	fmt.Fprintf(e.stdout, "snapshots.db backed up to %s (%d bytes, checked)\n", path, size)
	tpath := backupPath(tokensPath, store.TokensFile)
	tsize, err := store.BackupTokens(e.ctx, a.cfg.DataDir, tpath)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "tokens.db backed up to %s (%d bytes, checked, mode 0600: it holds the tokens, keep it secret)\n", tpath, tsize)
	return nil
}

// backupPath is where a backup goes: a path naming a directory (ending in
// a slash, or an existing one) gets a dated file inside it.
func backupPath(arg, file string) string {
	st, err := os.Stat(arg)
	if strings.HasSuffix(arg, "/") || (err == nil && st.IsDir()) {
		stem := strings.TrimSuffix(file, ".db")
		return filepath.Join(arg, fmt.Sprintf("%s-%s.db", stem, time.Now().UTC().Format("20060102T150405Z")))
	}
	return arg
}

func newTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }
