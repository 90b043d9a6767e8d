package main

import (
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/syncerhq/syncer/sync/sandbox"
)

func setupSandbox(fs *flag.FlagSet) func(e env, args []string) error {
	dir := fs.String("dir", "syncer-sandbox", "the `directory` the printed SYNCER_DATA_DIR points to")
	envFile := fs.String("env", "", "also write the export lines to this `file`, for a shell to source (. ./FILE)")
	return func(e env, args []string) error {
		if len(args) > 0 {
			return usagef("sandbox takes no arguments")
		}
		return runSandbox(e, *dir, *envFile)
	}
}

// runSandbox serves both providers' fakes on loopback until stopped, with
// the demo's accounts, and prints the environment that points syncer at
// them: the daemon, -once, status and faults can then be tried for real.
func runSandbox(e env, dir, envFile string) error {
	sb, err := sandbox.Start(sandbox.Options{})
	if err != nil {
		return fmt.Errorf("starting the sandbox: %w", err)
	}
	defer sb.Close()
	addDemoAccounts(sb)
	control, err := startSandboxControl(sb)
	if err != nil {
		return err
	}
	defer shutdown(control.srv)
	self := selfCommand()
	exports := fmt.Sprintf(`export SYNCER_DATA_DIR=%s
export SYNCER_EVERREAL_CLIENT_ID=%s
export SYNCER_EVERREAL_CLIENT_SECRET=%s
export SYNCER_ESTATEGURU_CLIENT_ID=%s
export SYNCER_ESTATEGURU_CLIENT_SECRET=%s
export SYNCER_ESTATEGURU_URL=%s
export SYNCER_RATE_LIMIT=0
export SANDBOX_EVERREAL_URL=%s
export SANDBOX_CONTROL_URL=%s
`, shellQuote(dir), sandbox.DefaultEverRealClientID, sandbox.DefaultEverRealClientSecret,
		sandbox.DefaultEstateGuruClientID, sandbox.DefaultEstateGuruClientSecret, sb.EstateGuruURL, sb.EverRealURL, control.url)
	if envFile != "" {
		// Written whole, then renamed: a script waiting for the file never
		// reads half of it.
		tmp := envFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(exports), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, envFile); err != nil {
			return err
		}
		defer os.Remove(envFile)
	}
	fmt.Fprintf(e.stdout, `# syncer sandbox: EverReal at %s, EstateGuru at %s (loopback fakes).
# Paste these lines into another shell:
%s# Then connect the sandbox's accounts and run syncer:
#   echo demo-password-anna | %s connect everreal -name anna -url $SANDBOX_EVERREAL_URL -username anna.admin@example.com
#   %s connect estateguru -name seed
#   %s -once && %s status
#   SYNCER_SCHEDULE='@every 1m' %s        # the daemon; Ctrl-C stops it
# Other accounts: ben.broker@example.com (demo-password-ben) at EverReal.
# Faults, while syncer runs (endpoints: %s):
#   curl -X POST "$SANDBOX_CONTROL_URL/fault?endpoint=estateguru-investments&status=503&times=10"
#   curl -X POST "$SANDBOX_CONTROL_URL/fault?endpoint=everreal-me&delay=40s"
#   curl -X POST "$SANDBOX_CONTROL_URL/revoke?provider=everreal&account=anna.admin@example.com"   # next refresh: invalid_grant
#   curl -X POST "$SANDBOX_CONTROL_URL/expire"                                                    # access tokens die
# The sandbox runs until you stop it (Ctrl-C).
`, sb.EverRealURL, sb.EstateGuruURL, exports, self, self, self, self, self, strings.Join(slices.Sorted(maps.Keys(sandboxEndpoints)), ", "))
	<-e.ctx.Done()
	fmt.Fprintln(e.stderr, "syncer: sandbox stopped")
	return nil
}

// sandboxEndpoints names the sandbox's endpoints for the control's fault
// call.
var sandboxEndpoints = map[string]sandbox.Endpoint{
	"everreal-token": sandbox.EverRealToken, "everreal-me": sandbox.EverRealMe, "everreal-revoke": sandbox.EverRealRevoke,
	"estateguru-authorize": sandbox.EstateGuruAuthorize, "estateguru-token": sandbox.EstateGuruToken,
	"estateguru-investments": sandbox.EstateGuruInvestments,
}

type sandboxControl struct {
	srv *http.Server
	url string
}

// startSandboxControl serves, on loopback, the calls that make the running
// sandbox misbehave: POST /fault (endpoint, status, times, delay, hang),
// /revoke (provider, account) and /expire.
func startSandboxControl(sb *sandbox.Sandbox) (*sandboxControl, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the sandbox control: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /fault", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ep, ok := sandboxEndpoints[q.Get("endpoint")]
		if !ok {
			http.Error(w, "endpoint: one of "+strings.Join(slices.Sorted(maps.Keys(sandboxEndpoints)), ", "), http.StatusBadRequest)
			return
		}
		var f sandbox.Fault
		var err error
		if v := q.Get("status"); v != "" {
			f.Status, err = strconv.Atoi(v)
		}
		if v := q.Get("times"); v != "" && err == nil {
			f.Times, err = strconv.Atoi(v)
		}
		if v := q.Get("delay"); v != "" && err == nil {
			f.Delay, err = time.ParseDuration(v)
		}
		f.Hang = q.Get("hang") == "1" || q.Get("hang") == "true"
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if f.Status == 0 && f.Delay == 0 && !f.Hang {
			http.Error(w, "give status, delay or hang", http.StatusBadRequest)
			return
		}
		if f.Status != 0 && f.Body == "" {
			f.Body = fmt.Sprintf(`{"error":"sandbox_fault","error_description":"injected %d"}`, f.Status)
			f.ContentType = "application/json"
		}
		sb.Inject(ep, f)
		fmt.Fprintf(w, "%s: fault queued\n", q.Get("endpoint"))
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		p, account := r.URL.Query().Get("provider"), r.URL.Query().Get("account")
		if (p != sandbox.EverReal && p != sandbox.EstateGuru) || account == "" {
			http.Error(w, "give provider (everreal or estateguru) and account (an e-mail or an investor name)", http.StatusBadRequest)
			return
		}
		sb.RevokeAll(p, account)
		fmt.Fprintf(w, "%s %s: tokens revoked\n", p, account)
	})
	mux.HandleFunc("POST /expire", func(w http.ResponseWriter, r *http.Request) {
		sb.ExpireAccessTokens()
		fmt.Fprintln(w, "access tokens expired")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &sandboxControl{srv: srv, url: "http://" + ln.Addr().String()}, nil
}

// selfCommand is how to run this syncer again from the directory it was
// started in: "syncer" when that is what PATH finds, "go run ./cmd/syncer"
// under go run (its binary is in a temporary build directory), or the
// binary's own path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "syncer"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		if _, err := os.Stat(filepath.Join("cmd", "syncer")); err == nil {
			return "go run ./cmd/syncer"
		}
		return "go run github.com/syncerhq/syncer/cmd/syncer"
	}
	if p, err := exec.LookPath("syncer"); err == nil {
		if sameFile(p, exe) {
			return "syncer"
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return shellQuote("./" + rel)
		}
	}
	return shellQuote(exe)
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
