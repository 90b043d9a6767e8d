package main

// End-to-end tests of connecting accounts: connect (both providers, password
// and browser flows), re-connect, status, disconnect and the token vault's
// encryption, all through the real binary against the sandbox.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncerhq/syncer/sync/sandbox"
)

// canaryPassword is every sandbox user's password in these tests. It must
// never appear in any output or file.
const canaryPassword = "CANARY-pass-w0rd-3c9e"

// erEmail is the EverReal user most tests connect.
const erEmail = "jo@example.com"

func addCanaryUser(sb *sandbox.Sandbox, email string) {
	sb.AddEverRealUser(sandbox.EverRealUser{Email: email, Password: canaryPassword, FirstName: "Jo", LastName: "Doe"})
}

// runC runs like w.run and also asserts the canary password (and any extra
// secret) stays out of the output.
func (w *world) runC(stdin string, args ...string) result {
	w.t.Helper()
	res := w.run(stdin, args...)
	w.noSecrets(res.stdout+res.stderr, canaryPassword)
	return res
}

func (w *world) mustRunC(want int, stdin string, args ...string) result {
	w.t.Helper()
	res := w.runC(stdin, args...)
	if res.code != want {
		w.t.Fatalf("syncer %s: want exit %d, got:\n%s", strings.Join(args, " "), want, res)
	}
	return res
}

// connectEverReal connects an EverReal user with the password grant, the
// password piped to stdin.
func (w *world) connectEverReal(want int, name, email, password string) result {
	w.t.Helper()
	return w.mustRunC(want, password+"\n", "connect", "everreal", "-name", name, "-url", w.sb.EverRealURL, "-username", email)
}

// tokensDB opens tokens.db read-only, as only a test may.
func (w *world) tokensDB() *sql.DB {
	w.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dataDir, "tokens.db")+"?mode=ro")
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { db.Close() })
	return db
}

// tokenRows counts the vault's token rows.
func (w *world) tokenRows() int {
	w.t.Helper()
	var n int
	if err := w.tokensDB().QueryRow("SELECT count(*) FROM token").Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// vaultDump is the vault's token rows as text, to compare before and after.
func (w *world) vaultDump() string {
	w.t.Helper()
	rows, err := w.tokensDB().Query("SELECT connection_id, refresh_token, coalesce(access_token, ''), generation, updated_at FROM token ORDER BY connection_id")
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, gen int64
		var refresh, access, updated string
		if err := rows.Scan(&id, &refresh, &access, &gen, &updated); err != nil {
			w.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d %s %s %d %s\n", id, refresh, access, gen, updated)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return b.String()
}

// checkpointVault folds tokens.db's WAL into the file, as SQLite does at its
// own pace, so a scan sees what a stolen disk would hold later.
func (w *world) checkpointVault() {
	w.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dataDir, "tokens.db"))
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		w.t.Fatal(err)
	}
}

// noSecretsInFiles asserts that neither database (nor its WAL) holds s.
func (w *world) noSecretsInFiles(secrets ...string) {
	w.t.Helper()
	for _, f := range []string{"snapshots.db", "tokens.db"} {
		for _, s := range secrets {
			if fileContains(w.t, filepath.Join(w.dataDir, f), s) {
				w.t.Fatalf("%s holds a secret (%.12s...)", f, s)
			}
		}
	}
}

// statusJSON runs `syncer status -json` and decodes it.
func (w *world) statusJSON(want int) []connectionStatus {
	w.t.Helper()
	res := w.mustRunC(want, "", "status", "-json")
	var out []connectionStatus
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		w.t.Fatalf("status -json is not JSON: %v\n%s", err, res)
	}
	return out
}

func findStatus(t *testing.T, all []connectionStatus, name string) connectionStatus {
	t.Helper()
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("status has no connection %q: %+v", name, all)
	return connectionStatus{}
}

func parseStatusTime(t *testing.T, what string, p *string) time.Time {
	t.Helper()
	if p == nil {
		t.Fatalf("%s is null", what)
	}
	tm, err := time.Parse(time.RFC3339, *p)
	if err != nil {
		t.Fatalf("%s = %q: %v", what, *p, err)
	}
	return tm
}

// within fails unless lo <= got <= hi (whole seconds: stored times are).
func within(t *testing.T, what string, got, lo, hi time.Time) {
	t.Helper()
	if got.Before(lo.Truncate(time.Second)) || got.After(hi) {
		t.Fatalf("%s = %s, want between %s and %s", what, got, lo.Format(time.RFC3339), hi.Format(time.RFC3339))
	}
}

// background is the binary running while the test plays the browser.
type background struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	code   int
}

// start runs the binary in the background; its stdout lines arrive on
// b.lines as they are printed.
func (w *world) start(args ...string) *background {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	b := &background{t: w.t, lines: make(chan string, 100), done: make(chan struct{})}
	b.cmd = exec.CommandContext(ctx, binary, args...)
	b.cmd.Env = w.environ()
	pr, pw := io.Pipe()
	b.cmd.Stdout = pw
	b.cmd.Stderr = &lockedWriter{mu: &b.mu, w: &b.stderr}
	if err := b.cmd.Start(); err != nil {
		cancel()
		w.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			b.mu.Lock()
			b.stdout.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
			select {
			case b.lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := b.cmd.Wait()
		pw.Close()
		if ee, ok := err.(*exec.ExitError); ok {
			b.code = ee.ExitCode()
		} else if err != nil {
			b.code = -1
		}
		cancel()
		close(b.done)
	}()
	w.t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// waitLine returns the first stdout line containing substr.
func (b *background) waitLine(substr string) string {
	b.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-b.lines:
			if strings.Contains(l, substr) {
				return strings.TrimSpace(l)
			}
		case <-b.done:
			// Drain what was printed before the exit.
			for {
				select {
				case l := <-b.lines:
					if strings.Contains(l, substr) {
						return strings.TrimSpace(l)
					}
				default:
					b.t.Fatalf("syncer exited before printing %q:\n%s", substr, b.result())
				}
			}
		case <-timeout:
			b.t.Fatalf("syncer printed no line with %q:\n%s", substr, b.result())
		}
	}
}

// wait waits for the exit and returns the result.
func (b *background) wait() result {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(time.Minute):
		b.t.Fatalf("syncer did not exit:\n%s", b.result())
	}
	return b.result()
}

func (b *background) result() result {
	b.mu.Lock()
	defer b.mu.Unlock()
	return result{code: b.code, stdout: b.stdout.String(), stderr: b.stderr.String()}
}

// browse GETs a URL as a browser would, following redirects, and returns
// the final status and body.
func browse(t *testing.T, u string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestConnectEverRealPasswordGrant(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)

	before := time.Now().UTC()
	res := w.connectEverReal(0, "er", erEmail, canaryPassword)
	after := time.Now().UTC()
	if !strings.Contains(res.stdout, "everreal er: connected") {
		t.Fatalf("connect should say it connected:\n%s", res)
	}
	if got, want := w.sb.Stats().EverRealTokenRequests, 1; got != want {
		t.Fatalf("token requests = %d, want %d (one password grant, never retried)", got, want)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'er'"), "active"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	if got, want := w.queryString("SELECT base_url FROM connections WHERE name = 'er'"), w.sb.EverRealURL; got != want {
		t.Fatalf("base_url = %q, want %q", got, want)
	}

	// status: both expiries (the refresh token's from its JWT: 30 days in
	// the sandbox), nothing needing attention yet.
	st := findStatus(t, w.statusJSON(0), "er")
	within(t, "access_expires_at", parseStatusTime(t, "access_expires_at", st.AccessExpiresAt), before.Add(time.Hour), after.Add(time.Hour))
	within(t, "refresh_expires_at", parseStatusTime(t, "refresh_expires_at", st.RefreshExpiresAt),
		before.Add(sandbox.DefaultRefreshTTL), after.Add(sandbox.DefaultRefreshTTL))
	if st.NeedsAttention || st.LastSuccessAt != nil {
		t.Fatalf("fresh connection: %+v, want no attention and no last success yet", st)
	}

	// The stored tokens work.
	w.mustRunC(0, "", "-once")
	if got, want := w.queryString("SELECT email FROM latest_everreal_users WHERE connection = 'er'"), erEmail; got != want {
		t.Fatalf("email = %q, want %q", got, want)
	}
	st = findStatus(t, w.statusJSON(0), "er")
	parseStatusTime(t, "last_success_at", st.LastSuccessAt)

	// The password was used, never stored.
	w.noSecretsInFiles(canaryPassword)
}

func TestConnectEverRealWrongPasswordCreatesNothing(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	const wrong = "CANARY-wrong-password-11aa"

	for _, tc := range []struct{ email, password string }{
		{erEmail, wrong},                       // wrong password
		{"nobody@example.com", canaryPassword}, // unknown user
	} {
		res := w.connectEverReal(1, "er", tc.email, tc.password)
		w.noSecrets(res.stdout+res.stderr, wrong)
		// The provider's reason, and what the person should do.
		for _, want := range []string{"invalid_grant", "heimdall.validation.user.does.not.exist", "password", "Nothing was stored"} {
			if !strings.Contains(res.stderr, want) {
				t.Fatalf("%s: stderr should contain %q:\n%s", tc.email, want, res)
			}
		}
		if strings.Contains(res.stdout, "connected") {
			t.Fatalf("%s: a refused login must not claim to connect:\n%s", tc.email, res)
		}
		if got := w.queryInt("SELECT count(*) FROM connections"); got != 0 {
			t.Fatalf("%s: %d connections after a refused login, want 0", tc.email, got)
		}
		if got := w.tokenRows(); got != 0 {
			t.Fatalf("%s: %d token rows after a refused login, want 0", tc.email, got)
		}
	}

	// A refused re-connect leaves the working connection as it was.
	w.connectEverReal(0, "er", erEmail, canaryPassword)
	vault := w.vaultDump()
	w.connectEverReal(1, "er", erEmail, wrong)
	if got := w.vaultDump(); got != vault {
		t.Fatalf("a refused re-connect changed the vault:\nbefore %s\nafter  %s", vault, got)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'er'"), "active"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	w.mustRunC(0, "", "-once")
	w.noSecretsInFiles(canaryPassword, wrong)
}

// The password comes from stdin (or a terminal prompt), never from argv or
// the environment.
func TestConnectPasswordOnlyFromStdin(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	base := []string{"connect", "everreal", "-name", "er", "-url", w.sb.EverRealURL, "-username", erEmail}

	// There is no flag for it, and the refusal does not echo the value.
	res := w.mustRunC(2, "", append(base, "-password="+canaryPassword)...)
	if !strings.Contains(res.stderr, "-password") {
		t.Fatalf("the unknown flag should be named:\n%s", res)
	}

	// Nothing on stdin: no login, even with the password in the environment.
	w.env = []string{"SYNCER_PASSWORD=" + canaryPassword, "SYNCER_EVERREAL_PASSWORD=" + canaryPassword, "PASSWORD=" + canaryPassword}
	res = w.mustRunC(2, "", base...)
	if !strings.Contains(res.stderr, "no password on stdin") {
		t.Fatalf("an empty stdin should be explained:\n%s", res)
	}
	w.env = nil
	if got := w.sb.Stats().EverRealTokenRequests; got != 0 {
		t.Fatalf("token requests = %d, want 0: a login was tried without a password", got)
	}

	// Missing -username is a usage error before anything is read.
	w.mustRunC(2, canaryPassword+"\n", "connect", "everreal", "-name", "er", "-url", w.sb.EverRealURL)

	// A Windows line ending is not part of the password; only the first
	// line is read.
	res = w.mustRunC(0, canaryPassword+"\r\nsecond line\n", base...)
	if !strings.Contains(res.stdout, "connected") {
		t.Fatalf("connect should succeed:\n%s", res)
	}
	w.noSecretsInFiles(canaryPassword)
}

func TestConnectEverRealWeb(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, "first@example.com")
	addCanaryUser(w.sb, erEmail)

	// -username goes along as login_hint: the sandbox approves as that
	// user, not the first one.
	b := w.start("connect", "everreal", "-web", "-name", "er", "-url", w.sb.EverRealURL, "-username", erEmail)
	authURL := b.waitLine("/accounts/dialog/authorize")
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{"response_type": "code", "code_challenge_method": "S256", "client_id": "er-client",
		"scope": "offline_access *", "login_hint": erEmail} {
		if got := q.Get(k); got != want {
			t.Fatalf("authorize URL %s = %q, want %q (%s)", k, got, want, authURL)
		}
	}
	if len(q.Get("state")) < 20 || len(q.Get("code_challenge")) != 43 {
		t.Fatalf("authorize URL needs an unguessable state and an S256 challenge: %s", authURL)
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Hostname() != "127.0.0.1" || redirect.Port() == "" {
		t.Fatalf("redirect_uri %q should be a loopback listener on a free port", q.Get("redirect_uri"))
	}

	// The sandbox approves at once and redirects to the loopback listener.
	status, body := browse(t, authURL)
	if status != http.StatusOK || !strings.Contains(body, "logged in") {
		t.Fatalf("the browser got %d %q, want 200 and a logged-in page", status, body)
	}
	res := b.wait()
	w.noSecrets(res.stdout+res.stderr, canaryPassword)
	if res.code != 0 || !strings.Contains(res.stdout, "everreal er: connected") {
		t.Fatalf("connect -web should succeed:\n%s", res)
	}
	if got, want := w.sb.Stats().EverRealTokenRequests, 1; got != want {
		t.Fatalf("token requests = %d, want %d (one code exchange)", got, want)
	}
	w.mustRunC(0, "", "-once")
	if got, want := w.queryString("SELECT email FROM latest_everreal_users WHERE connection = 'er'"), erEmail; got != want {
		t.Fatalf("email = %q, want %q (login_hint should pick the user)", got, want)
	}
	st := findStatus(t, w.statusJSON(0), "er")
	parseStatusTime(t, "refresh_expires_at", st.RefreshExpiresAt)
}

// Finding 8: a forged callback (any local user or web page can send one)
// is answered 400 and the wait goes on: the real login still connects.
func TestConnectEverRealWebRefusesForeignState(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	b := w.start("connect", "everreal", "-web", "-name", "er", "-url", w.sb.EverRealURL)
	authURL := b.waitLine("/accounts/dialog/authorize")
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	// A page the person happens to visit forges a callback with a code of
	// its choosing: no state, or a wrong one, or an error.
	for _, forged := range []string{"?code=forged&state=not-ours", "?code=forged", "?error=access_denied&state=x"} {
		if status, _ := browse(t, u.Query().Get("redirect_uri")+forged); status != http.StatusBadRequest {
			t.Fatalf("a forged callback got %d, want 400", status)
		}
	}
	if got := w.sb.Stats().EverRealTokenRequests; got != 0 {
		t.Fatalf("token requests = %d, want 0: a forged code was exchanged", got)
	}
	// The real login, after them, still connects.
	if status, body := browse(t, authURL); status != http.StatusOK || !strings.Contains(body, "logged in") {
		t.Fatalf("the real login got %d %q", status, body)
	}
	res := b.wait()
	if res.code != 0 || !strings.Contains(res.stderr, "different state") {
		t.Fatalf("the forged callbacks should be reported and the real login succeed:\n%s", res)
	}
	if got, want := w.sb.Stats().EverRealTokenRequests, 1; got != want {
		t.Fatalf("token requests = %d, want %d", got, want)
	}
}

func TestConnectEverRealWebTimeout(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	res := w.mustRunC(1, "", "connect", "everreal", "-web", "-timeout", "1s", "-name", "er", "-url", w.sb.EverRealURL)
	if !strings.Contains(res.stdout, "/accounts/dialog/authorize") {
		t.Fatalf("the address to open should be printed:\n%s", res)
	}
	if !strings.Contains(res.stderr, "no login arrived within 1s") || !strings.Contains(res.stderr, "-timeout") {
		t.Fatalf("the timeout should be explained, with the way out:\n%s", res)
	}
	if got := w.queryInt("SELECT count(*) FROM connections"); got != 0 {
		t.Fatalf("connections = %d, want 0", got)
	}
	w.mustRunC(2, "", "connect", "everreal", "-web", "-timeout", "0s", "-name", "er", "-url", w.sb.EverRealURL)
}

func TestConnectEstateGuru(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")

	// The URL comes from SYNCER_ESTATEGURU_URL.
	res := w.mustRunC(0, "", "connect", "estateguru", "-name", "eg")
	if !strings.Contains(res.stdout, "estateguru eg: connected") {
		t.Fatalf("connect should say it connected:\n%s", res)
	}
	st := w.sb.Stats()
	if got, want := st.Requests[string(sandbox.EstateGuruAuthorize)], 1; got != want {
		t.Fatalf("authorize calls = %d, want %d", got, want)
	}
	w.mustRunC(0, "", "-once")
	if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(4887290014); got != want {
		t.Fatalf("cash_cents = %d, want %d", got, want)
	}
	s := findStatus(t, w.statusJSON(0), "eg")
	if s.AccessExpiresAt == nil || s.RefreshExpiresAt != nil {
		t.Fatalf("EstateGuru status: access expiry %v, refresh expiry %v; want a time and null (its refresh tokens rotate, they do not expire)",
			s.AccessExpiresAt, s.RefreshExpiresAt)
	}
}

func TestConnectEstateGuruRefusesForeignRequestID(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	const access, refresh = "CANARY-foreign-access-77", "CANARY-foreign-refresh-78"
	w.sb.Inject(sandbox.EstateGuruAuthorize, sandbox.Fault{Body: `{"access_token":"` + access + `","token_type":"bearer",` +
		`"expires_in":43199,"refresh_token":"` + refresh + `","request_id":"d16509f6-62ef-4902-bba1-912960e00898"}`})
	res := w.mustRunC(1, "", "connect", "estateguru", "-name", "eg")
	w.noSecrets(res.stdout+res.stderr, access, refresh)
	if !strings.Contains(res.stderr, "request id mismatch") {
		t.Fatalf("another request's answer should be refused by name:\n%s", res)
	}
	if got := w.queryInt("SELECT count(*) FROM connections"); got != 0 {
		t.Fatalf("connections = %d, want 0", got)
	}
	if got := w.tokenRows(); got != 0 {
		t.Fatalf("token rows = %d, want 0", got)
	}
	w.noSecretsInFiles(access, refresh)
}

// egFront stands in front of the sandbox's EstateGuru and changes only the
// authorize call, for the variants the sandbox itself does not produce: an
// answer whose request_id carries a prefix (as the seed's sample answers
// do), and an answer that sends the person to a page, after which the
// tokens come to the redirect URL. It gets real tokens from the sandbox, so
// syncs through it work; everything else is passed through.
type egFront struct {
	t    *testing.T
	sb   *sandbox.Sandbox
	srv  *httptest.Server
	mode string // "prefix", "page-redirect" (a 302) or "page-json" ({"url": ...})

	mu          sync.Mutex
	redirectURL string // the redirectUrl syncer sent
	requestID   string // the requestId syncer sent
	approvals   map[string]string
}

const egPrefix = "1313d3df-81d6-45b1-abae-6dc84b71b" // 33 characters, as in the seed

func newEGFront(t *testing.T, sb *sandbox.Sandbox, mode string) *egFront {
	f := &egFront{t: t, sb: sb, mode: mode, approvals: map[string]string{}}
	target, err := url.Parse(sb.EstateGuruURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	mux := http.NewServeMux()
	mux.Handle("/", proxy)
	mux.HandleFunc("/api/oauth/authorize", f.authorize)
	mux.HandleFunc("/portal/approve", f.approve)
	// Set before it serves: the handlers read f.srv.URL.
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *egFront) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := http.PostForm(f.sb.EstateGuruURL+"/api/oauth/authorize", r.PostForm)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var ans map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ans) != nil {
		http.Error(w, "sandbox refused", http.StatusBadGateway)
		return
	}
	reqID := r.PostForm.Get("requestId")
	f.mu.Lock()
	f.redirectURL, f.requestID = r.PostForm.Get("redirectUrl"), reqID
	f.mu.Unlock()
	ans["request_id"] = egPrefix + reqID
	if f.mode == "prefix" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ans)
		return
	}
	// The person must approve on a page first; the tokens wait for it.
	cb := url.Values{}
	for k, v := range ans {
		cb.Set(k, fmt.Sprint(v))
	}
	id := hex.EncodeToString(randomBytes(8))
	f.mu.Lock()
	f.approvals[id] = f.redirectURL + "?" + cb.Encode()
	f.mu.Unlock()
	page := f.srv.URL + "/portal/approve?id=" + id
	if f.mode == "page-json" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"request_id":%q,"url":%q}`, egPrefix+reqID, page)
		return
	}
	http.Redirect(w, r, page, http.StatusFound)
}

// approve is the page the person approves on; it sends the browser on to
// the redirect URL with the tokens.
func (f *egFront) approve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	to, ok := f.approvals[r.URL.Query().Get("id")]
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}

func (f *egFront) sent() (redirectURL, requestID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.redirectURL, f.requestID
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestConnectEstateGuruAcceptsPrefixedRequestID(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addSampleInvestor(w.sb, "inv")
	front := newEGFront(t, w.sb, "prefix")
	w.mustRunC(0, "", "connect", "estateguru", "-name", "eg", "-url", front.srv.URL)
	if _, id := front.sent(); len(id) < 32 {
		t.Fatalf("requestId %q should be unguessable", id)
	}
	w.mustRunC(0, "", "-once")
	if got, want := w.queryInt("SELECT count(*) FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(1); got != want {
		t.Fatalf("snapshots = %d, want %d", got, want)
	}
}

func TestConnectEstateGuruPage(t *testing.T) {
	for _, mode := range []string{"page-redirect", "page-json"} {
		t.Run(mode, func(t *testing.T) {
			w := newWorld(t, sandbox.Options{})
			addSampleInvestor(w.sb, "inv")
			front := newEGFront(t, w.sb, mode)
			b := w.start("connect", "estateguru", "-name", "eg", "-url", front.srv.URL)
			page := b.waitLine("/portal/approve")
			if redirect, _ := front.sent(); !strings.HasPrefix(redirect, "http://127.0.0.1:") {
				t.Fatalf("redirectUrl %q should be a loopback listener", redirect)
			}
			status, body := browse(t, page)
			if status != http.StatusOK || !strings.Contains(body, "syncer") {
				t.Fatalf("the browser got %d %q at the loopback listener", status, body)
			}
			res := b.wait()
			if res.code != 0 || !strings.Contains(res.stdout, "estateguru eg: connected") {
				t.Fatalf("connect should finish once the tokens arrive:\n%s", res)
			}
			w.mustRunC(0, "", "-once")
			if got, want := w.queryInt("SELECT cash_cents FROM latest_estateguru_portfolios WHERE connection = 'eg'"), int64(4887290014); got != want {
				t.Fatalf("cash_cents = %d, want %d", got, want)
			}
		})
	}

	// Finding 8: a callback for another request is answered 400 and the
	// wait goes on for the real approval.
	t.Run("forged callback", func(t *testing.T) {
		w := newWorld(t, sandbox.Options{})
		addSampleInvestor(w.sb, "inv")
		front := newEGFront(t, w.sb, "page-redirect")
		b := w.start("connect", "estateguru", "-name", "eg", "-url", front.srv.URL)
		page := b.waitLine("/portal/approve")
		redirect, _ := front.sent()
		const access, refresh = "CANARY-forged-access-1", "CANARY-forged-refresh-2"
		for _, forged := range []string{
			"?access_token=" + access + "&refresh_token=" + refresh + "&expires_in=43199&request_id=" + egPrefix + "d16509f6-62ef-4902-bba1-912960e00898",
			"?error=access_denied",
		} {
			if status, _ := browse(t, redirect+forged); status != http.StatusBadRequest {
				t.Fatalf("a forged callback got %d, want 400", status)
			}
		}
		if status, _ := browse(t, page); status != http.StatusOK {
			t.Fatalf("the real approval got %d", status)
		}
		res := b.wait()
		w.noSecrets(res.stdout+res.stderr, access, refresh)
		if res.code != 0 || !strings.Contains(res.stderr, "request id mismatch") {
			t.Fatalf("the forged callbacks should be reported and the real approval connect:\n%s", res)
		}
		w.noSecretsInFiles(access, refresh)
		w.mustRunC(0, "", "-once")
	})

	t.Run("timeout", func(t *testing.T) {
		w := newWorld(t, sandbox.Options{})
		addSampleInvestor(w.sb, "inv")
		front := newEGFront(t, w.sb, "page-redirect")
		res := w.mustRunC(1, "", "connect", "estateguru", "-name", "eg", "-url", front.srv.URL, "-timeout", "1s")
		if !strings.Contains(res.stdout, "/portal/approve") || !strings.Contains(res.stderr, "no approval arrived within 1s") {
			t.Fatalf("the page and the timeout should be shown:\n%s", res)
		}
	})
}

func TestStatusWarnsBeforeRefreshTokenDies(t *testing.T) {
	w := newWorld(t, sandbox.Options{RefreshTTL: 3 * 24 * time.Hour})
	addCanaryUser(w.sb, erEmail)
	addSampleInvestor(w.sb, "inv")
	w.connectEverReal(0, "er", erEmail, canaryPassword)
	w.mustRunC(0, "", "connect", "estateguru", "-name", "eg")

	res := w.mustRunC(1, "", "status")
	if !strings.Contains(res.stdout, "warning: er: the refresh token dies in 2 days") || !strings.Contains(res.stdout, "re-connect") {
		t.Fatalf("status should warn about er's refresh token:\n%s", res)
	}
	if strings.Contains(res.stdout, "warning: eg") {
		t.Fatalf("eg needs nothing:\n%s", res)
	}
	all := w.statusJSON(1)
	er := findStatus(t, all, "er")
	if !er.NeedsAttention || len(er.Warnings) != 1 || er.State != "active" {
		t.Fatalf("er status = %+v, want active, needing attention, one warning", er)
	}
	if eg := findStatus(t, all, "eg"); eg.NeedsAttention {
		t.Fatalf("eg status = %+v, want no attention", eg)
	}

	// A shorter warning window: nothing to say yet.
	w.env = []string{"SYNCER_REFRESH_WARN=48h"}
	res = w.mustRunC(0, "", "status")
	if strings.Contains(res.stdout, "warning") {
		t.Fatalf("no warning expected with SYNCER_REFRESH_WARN=48h:\n%s", res)
	}
	w.env = nil

	// The expiry is the refresh JWT's exp, to the second.
	exp := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	tok := w.sb.IssueEverRealRefreshTokenExpiring(erEmail, exp)
	w.mustRunC(0, tok+"\n", "import", "-provider", "everreal", "-name", "er2", "-url", w.sb.EverRealURL)
	er2 := findStatus(t, w.statusJSON(1), "er2")
	if er2.RefreshExpiresAt == nil || *er2.RefreshExpiresAt != exp.Format(time.RFC3339) {
		t.Fatalf("er2 refresh_expires_at = %v, want %s (the JWT's exp)", er2.RefreshExpiresAt, exp.Format(time.RFC3339))
	}
	if !er2.NeedsAttention {
		t.Fatalf("10 days left is within the default 14: %+v", er2)
	}
}

func TestReconnectAfterReauthRequired(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second})
	addCanaryUser(w.sb, erEmail)
	addSampleInvestor(w.sb, "inv")
	w.connectEverReal(0, "er", erEmail, canaryPassword)
	w.mustRunC(0, "", "connect", "estateguru", "-name", "eg")
	w.mustRunC(0, "", "-once")
	id := w.queryInt("SELECT id FROM connection WHERE name = 'er'")
	created := w.queryString("SELECT created_at FROM connections WHERE name = 'er'")

	w.sb.RevokeAll(sandbox.EverReal, erEmail)
	w.sb.RevokeAll(sandbox.EstateGuru, "inv")
	w.mustRunC(1, "", "-once")
	for _, name := range []string{"er", "eg"} {
		if got, want := w.queryString("SELECT state FROM connections WHERE name = ?", name), "reauth_required"; got != want {
			t.Fatalf("%s state = %q, want %q", name, got, want)
		}
	}
	if res := w.mustRunC(1, "", "status"); !strings.Contains(res.stdout, "syncer connect everreal -name er") {
		t.Fatalf("status should say how to re-connect:\n%s", res)
	}

	res := w.connectEverReal(0, "er", erEmail, canaryPassword)
	if !strings.Contains(res.stdout, "re-connected (was reauth_required; history kept)") {
		t.Fatalf("connect should say it re-connected:\n%s", res)
	}
	res = w.mustRunC(0, "", "connect", "estateguru", "-name", "eg")
	if !strings.Contains(res.stdout, "re-connected (was reauth_required") {
		t.Fatalf("connect should say it re-connected:\n%s", res)
	}
	if got := w.queryInt("SELECT id FROM connection WHERE name = 'er'"); got != id {
		t.Fatalf("connection id = %d, want %d (the same connection)", got, id)
	}
	if got := w.queryString("SELECT created_at FROM connections WHERE name = 'er'"); got != created {
		t.Fatalf("created_at = %s, want %s", got, created)
	}
	if got := w.queryString("SELECT coalesce(last_error, '') || state FROM connections WHERE name = 'er'"); got != "active" {
		t.Fatalf("after re-connect: %q, want state active and no last error", got)
	}
	w.mustRunC(0, "", "status")
	w.mustRunC(0, "", "-once")
	// Both snapshots are kept: the one before the revoke is in today's
	// period and replaced, so count the runs' results instead.
	if got, want := w.queryInt("SELECT count(*) FROM sync_results WHERE connection = 'er' AND status = 'ok'"), int64(2); got != want {
		t.Fatalf("er ok results = %d, want %d (history kept)", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM latest_everreal_users WHERE connection = 'er'"), int64(1); got != want {
		t.Fatalf("er snapshots = %d, want %d", got, want)
	}

	// The name belongs to EverReal: an EstateGuru connect under it is
	// refused before anything is asked of EstateGuru.
	authorizes := w.sb.Stats().Requests[string(sandbox.EstateGuruAuthorize)]
	res = w.mustRunC(2, "", "connect", "estateguru", "-name", "er")
	if !strings.Contains(res.stderr, "already exists for everreal") {
		t.Fatalf("the clash should be explained:\n%s", res)
	}
	if got := w.sb.Stats().Requests[string(sandbox.EstateGuruAuthorize)]; got != authorizes {
		t.Fatalf("authorize calls went from %d to %d: the clash was found too late", authorizes, got)
	}
}

func TestDisconnectRevokesAndKeepsSnapshots(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	w.connectEverReal(0, "er", erEmail, canaryPassword)
	w.mustRunC(0, "", "-once")
	if got, want := w.sb.EverRealRefreshTokenCount(erEmail), 1; got != want {
		t.Fatalf("live refresh tokens = %d, want %d", got, want)
	}

	res := w.mustRunC(0, "", "disconnect", "er")
	if !strings.Contains(res.stdout, "revoked at EverReal") || !strings.Contains(res.stdout, "snapshots kept") {
		t.Fatalf("disconnect should say what it did:\n%s", res)
	}
	if got, want := w.sb.Stats().Revoked, 2; got != want {
		t.Fatalf("revoked at the sandbox = %d, want %d (refresh and access token)", got, want)
	}
	if got := w.sb.EverRealRefreshTokenCount(erEmail); got != 0 {
		t.Fatalf("live refresh tokens = %d, want 0", got)
	}
	if got := w.tokenRows(); got != 0 {
		t.Fatalf("token rows = %d, want 0", got)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'er'"), "disconnected"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}
	if got, want := w.queryInt("SELECT count(*) FROM everreal_users WHERE connection = 'er'"), int64(1); got != want {
		t.Fatalf("snapshots = %d, want %d (kept)", got, want)
	}
	// A deliberate disconnect needs no person, and is not synced.
	st := findStatus(t, w.statusJSON(0), "er")
	if st.State != "disconnected" || st.RefreshExpiresAt != nil || st.AccessExpiresAt != nil {
		t.Fatalf("status = %+v, want disconnected with no expiries", st)
	}
	data := w.sb.Stats().DataRequests[string(sandbox.EverRealMe)]
	w.mustRunC(0, "", "-once")
	if got := w.sb.Stats().DataRequests[string(sandbox.EverRealMe)]; got != data {
		t.Fatalf("a disconnected connection was synced")
	}

	w.mustRunC(2, "", "disconnect", "nobody")

	// And back.
	res = w.connectEverReal(0, "er", erEmail, canaryPassword)
	if !strings.Contains(res.stdout, "re-connected (was disconnected") {
		t.Fatalf("connect should re-connect the disconnected name:\n%s", res)
	}
	w.mustRunC(0, "", "-once")
}

func TestDisconnectWhenRevokeFails(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	addSampleInvestor(w.sb, "inv")
	refresh := w.sb.IssueEverRealRefreshToken(erEmail)
	w.mustRunC(0, refresh+"\n", "import", "-provider", "everreal", "-name", "er", "-url", w.sb.EverRealURL)
	w.mustRunC(0, "", "connect", "estateguru", "-name", "eg")
	w.checkpointVault()
	if !fileContains(t, filepath.Join(w.dataDir, "tokens.db"), refresh) {
		t.Fatal("the token should be in tokens.db before the disconnect (or this test cannot see it go)")
	}

	w.sb.Inject(sandbox.EverRealRevoke, sandbox.Fault{Status: http.StatusServiceUnavailable, Body: `{"error":"server_error"}`})
	res := w.mustRunC(1, "", "disconnect", "er")
	if !strings.Contains(res.stderr, "the revoke failed") || !strings.Contains(res.stderr, "deleted anyway") {
		t.Fatalf("the failed revoke should be reported:\n%s", res)
	}
	if got, want := w.sb.EverRealRefreshTokenCount(erEmail), 1; got != want {
		t.Fatalf("live refresh tokens = %d, want %d (the revoke failed)", got, want)
	}
	if got, want := w.queryString("SELECT state FROM connections WHERE name = 'er'"), "disconnected"; got != want {
		t.Fatalf("state = %q, want %q", got, want)
	}

	// EstateGuru documents no revoke: say so, delete locally.
	res = w.mustRunC(0, "", "disconnect", "eg")
	if !strings.Contains(res.stdout, "no revoke call") {
		t.Fatalf("disconnect should say EstateGuru cannot revoke:\n%s", res)
	}
	if got := w.tokenRows(); got != 0 {
		t.Fatalf("token rows = %d, want 0", got)
	}
	// Gone from the disk too (secure_delete), not left in a free page.
	w.checkpointVault()
	w.noSecretsInFiles(refresh, strings.Split(refresh, ".")[1])
}

// writeKey writes a fresh 64-hex-digit key file and returns its path.
func writeKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token.key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(randomBytes(32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTokenKeyEncryptsTokens(t *testing.T) {
	w := newWorld(t, sandbox.Options{AccessTTL: time.Second}) // every run refreshes
	addCanaryUser(w.sb, erEmail)
	addSampleInvestor(w.sb, "inv")
	key := writeKey(t)
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key}

	refresh := w.sb.IssueEverRealRefreshToken(erEmail)
	w.mustRunC(0, refresh+"\n", "import", "-provider", "everreal", "-name", "er", "-url", w.sb.EverRealURL)
	w.connectEverReal(0, "er-pw", erEmail, canaryPassword)
	w.mustRunC(0, "", "connect", "estateguru", "-name", "eg")
	w.mustRunC(0, "", "-once")
	w.noSecretsInFiles(refresh, strings.Split(refresh, ".")[1], canaryPassword)
	w.checkpointVault()
	w.noSecretsInFiles(refresh, strings.Split(refresh, ".")[1])
	vault := w.vaultDump()
	uses := w.sb.RefreshUses(refresh)
	tokenRequests := w.sb.Stats().EverRealTokenRequests + w.sb.Stats().EstateGuruTokenRequests
	runs := w.queryInt("SELECT count(*) FROM sync_runs")

	// Another key: a clear error, exit 2 (configuration), no provider
	// asked, nothing changed.
	// (status reads snapshots.db alone and never meets the key.)
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + writeKey(t)}
	for _, args := range [][]string{{"-once"}} {
		res := w.runC("", args...)
		if res.code != 2 || !strings.Contains(res.stderr, "not the key") {
			t.Fatalf("%v with another key: want a clear error and exit 2, got:\n%s", args, res)
		}
	}
	// Without a key.
	w.env = nil
	res := w.runC("", "-once")
	if res.code != 2 || !strings.Contains(res.stderr, "encrypted but no key is configured") || !strings.Contains(res.stderr, "SYNCER_TOKEN_KEY_FILE") {
		t.Fatalf("-once without the key: want a clear error, got:\n%s", res)
	}
	// A key file that is not a key.
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + filepath.Join(t.TempDir(), "missing.key")}
	res = w.mustRunC(2, "", "status")
	if !strings.Contains(res.stderr, "SYNCER_TOKEN_KEY_FILE") {
		t.Fatalf("a missing key file should be named:\n%s", res)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + bad}
	res = w.mustRunC(2, "", "status")
	if !strings.Contains(res.stderr, "64 hex digits") {
		t.Fatalf("a malformed key should be explained:\n%s", res)
	}

	if got := w.vaultDump(); got != vault {
		t.Fatalf("a refused key changed the vault:\nbefore %s\nafter  %s", vault, got)
	}
	if got := w.sb.Stats().EverRealTokenRequests + w.sb.Stats().EstateGuruTokenRequests; got != tokenRequests {
		t.Fatalf("token requests went from %d to %d without the key: never a silent re-login", tokenRequests, got)
	}
	if got := w.queryInt("SELECT count(*) FROM sync_runs"); got != runs {
		t.Fatalf("sync runs went from %d to %d without the key", runs, got)
	}

	// The right key still opens everything.
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key}
	w.mustRunC(0, "", "-once")
	if got := w.sb.RefreshUses(refresh); got != uses+1 {
		t.Fatalf("refresh token uses = %d, want %d: the stored token should still be the imported one", got, uses+1)
	}
}

func TestTokenKeyAddedLaterSealsStoredTokens(t *testing.T) {
	w := newWorld(t, sandbox.Options{})
	addCanaryUser(w.sb, erEmail)
	var tokens []string
	for i := range 3 {
		tok := w.sb.IssueEverRealRefreshToken(erEmail)
		tokens = append(tokens, tok, strings.Split(tok, ".")[1])
		w.mustRunC(0, tok+"\n", "import", "-provider", "everreal", "-name", fmt.Sprint("er", i), "-url", w.sb.EverRealURL)
	}
	refresh := tokens[0]
	w.checkpointVault()
	if !fileContains(t, filepath.Join(w.dataDir, "tokens.db"), refresh) {
		t.Fatal("without a key the token should be stored as is (or this test cannot see it go)")
	}

	key := writeKey(t)
	w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + key}
	w.mustRunC(0, "", "-once")
	w.checkpointVault()
	// secure_delete: the plain text is overwritten, not left in a free page.
	w.noSecretsInFiles(tokens...)
	w.mustRunC(0, "", "-once")

	w.env = nil
	if res := w.runC("", "-once"); res.code == 0 || !strings.Contains(res.stderr, "no key is configured") {
		t.Fatalf("the sealed vault without its key: want a clear error, got:\n%s", res)
	}
}

// The daemon and a -once run may both start right after a key is added:
// one of them seals the vault, the other must find it sealed, not fail.
func TestTokenKeyAddedWhileSeveralStart(t *testing.T) {
	for round := 0; round < 3; round++ {
		w := newWorld(t, sandbox.Options{})
		addCanaryUser(w.sb, erEmail)
		for i := range 2 {
			tok := w.sb.IssueEverRealRefreshToken(erEmail)
			w.mustRunC(0, tok+"\n", "import", "-provider", "everreal", "-name", fmt.Sprint("er", i), "-url", w.sb.EverRealURL)
		}
		w.env = []string{"SYNCER_TOKEN_KEY_FILE=" + writeKey(t)}
		var wg sync.WaitGroup
		res := make([]result, 4)
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = w.run("", "-once")
			}()
		}
		wg.Wait()
		for _, r := range res {
			if r.code != 0 {
				t.Fatalf("-once started with a new key alongside others:\n%s", r)
			}
		}
		w.mustRunC(0, "", "-once")
	}
}
