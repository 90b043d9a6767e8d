package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// everRealBase picks the base URL from -subdomain or -url, exactly one.
func everRealBase(subdomain, rawURL string) (string, error) {
	switch {
	case subdomain != "" && rawURL != "":
		return "", usagef("give -subdomain or -url, not both")
	case subdomain != "":
		u, err := everreal.BaseURLForSubdomain(subdomain)
		if err != nil {
			return "", usagef("-subdomain: %v", err)
		}
		return u, nil
	case rawURL != "":
		u, err := normalizeBaseURL(rawURL)
		if err != nil {
			return "", usagef("-url: %v", err)
		}
		return u, nil
	}
	return "", usagef("EverReal needs -subdomain S (for https://S.everreal.co) or -url U")
}

func checkName(name string) error {
	if strings.TrimSpace(name) == "" {
		return usagef("-name is required: the connection's name, as it will appear in reports")
	}
	if len(name) > 100 || strings.ContainsAny(name, "\x00\n\r\t") {
		return usagef("-name %q: at most 100 characters, no control characters", name)
	}
	return nil
}

type everRealFlags struct {
	name, subdomain, url, username, redirectURL string
	web                                         bool
	timeout                                     time.Duration
}

func setupConnectEverReal(fs *flag.FlagSet) func(e env, args []string) error {
	var f everRealFlags
	fs.StringVar(&f.name, "name", "", "connection `name`, as it will appear in reports")
	fs.StringVar(&f.subdomain, "subdomain", "", "your EverReal `subdomain` (https://SUBDOMAIN.everreal.co)")
	fs.StringVar(&f.url, "url", "", "EverReal base `URL` instead of -subdomain")
	fs.StringVar(&f.username, "username", "", "EverReal login `e-mail` (password grant; with -web, a login hint)")
	fs.BoolVar(&f.web, "web", false, "log in through the browser (authorization code with PKCE) instead of a password")
	fs.StringVar(&f.redirectURL, "redirect-url", "", "with -web: the loopback redirect `URL` registered with EverReal, e.g. http://127.0.0.1:8765/callback (default: a free port)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "with -web: how long to wait for the browser")
	return func(e env, args []string) error {
		if len(args) > 0 {
			return usagef("connect everreal takes no arguments (unexpected %q)", args[0])
		}
		return connectEverReal(e, f)
	}
}

func connectEverReal(e env, f everRealFlags) error {
	name, subdomain, rawURL, username, web, timeout := &f.name, &f.subdomain, &f.url, &f.username, &f.web, &f.timeout
	if f.redirectURL != "" && !f.web {
		return usagef("-redirect-url works only with -web")
	}
	if _, _, err := loopbackRedirect(f.redirectURL); err != nil {
		return usagef("-redirect-url: %v", err) // before anything is opened
	}
	if err := checkName(*name); err != nil {
		return err
	}
	base, err := everRealBase(*subdomain, *rawURL)
	if err != nil {
		return err
	}
	if !*web && *username == "" {
		return usagef("connect everreal needs -username EMAIL (or -web to log in through the browser)")
	}
	if *timeout <= 0 {
		return usagef("-timeout must be positive (try 5m)")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.needCredentials(everreal.Name); err != nil {
		return err
	}
	// Open the store before logging in: a login whose tokens cannot be
	// saved would only evict one of the account's 50 stored tokens.
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	if err := checkNameFree(e, a, *name, everreal.Name); err != nil {
		return err
	}
	client := a.everReal(base)
	var tok provider.Token
	if *web {
		tok, err = everRealWebLogin(e, client, *username, f.redirectURL, *timeout)
	} else {
		var password provider.Secret
		password, err = readSecret(e, "password", fmt.Sprintf("EverReal password for %s: ", *username))
		if err == nil {
			tok, err = client.PasswordGrant(e.ctx, *username, password)
			err = refusedLogin(err, *username)
		}
	}
	if err != nil {
		return err
	}
	return saveConnection(e, a, *name, everreal.Name, base, tok, false)
}

// checkNameFree refuses, before any login, a name that another provider's
// connection holds: the login would be wasted (and at EverReal could evict
// one of the account's 50 stored tokens).
func checkNameFree(e env, a *app, name, providerName string) error {
	c, err := a.store.ConnectionByName(e.ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case c.Provider != providerName:
		return usagef("connection %q already exists for %s (names stay taken, with their history, after a disconnect): choose another -name", name, c.Provider)
	}
	return nil
}

// refusedLogin words a refused password login for the person who just typed
// it: the provider's reason, and that nothing was stored. The generic hint
// ("run syncer connect again") is for a stored login gone bad.
func refusedLogin(err error, username string) error {
	var pe *provider.Error
	if err == nil || !errors.As(err, &pe) || pe.Kind != provider.KindReauth {
		return err
	}
	reason := pe.Code
	if pe.Description != "" {
		reason += ": " + pe.Description
	}
	if pe.Status != 0 {
		reason += fmt.Sprintf(" (HTTP %d)", pe.Status)
	}
	return fmt.Errorf("%s refused the login for %q: %s; check the e-mail address and the password. Nothing was stored", pe.Provider, username, reason)
}

func saveConnection(e env, a *app, name, providerName, base string, tok provider.Token, quiet bool) error {
	existing, err := a.store.ConnectionByName(e.ctx, name)
	reconnect := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if reconnect {
		// A sync of this connection may be refreshing with the old tokens
		// right now; wait for it, so its save cannot overwrite ours.
		unlock, err := a.store.LockConnection(e.ctx, existing.ID, a.cfg.LockTimeout)
		if err != nil {
			return err
		}
		defer unlock()
	}
	c, err := a.store.Connect(e.ctx, name, providerName, base, tok)
	if err != nil {
		return err
	}
	verb := "connected"
	if reconnect {
		verb = fmt.Sprintf("re-connected (was %s; history kept)", existing.State)
	}
	fmt.Fprintf(e.stdout, "%s %s: %s\n", providerName, c.Name, verb)
	if !tok.RefreshExpiresAt.IsZero() {
		fmt.Fprintf(e.stdout, "  the login lasts until %s; re-connect before then\n", tok.RefreshExpiresAt.UTC().Format(time.RFC3339))
	}
	if !quiet {
		fmt.Fprintln(e.stdout, "  run `syncer -once` to take a first snapshot")
	}
	return nil
}

// readSecret reads a secret (what: "password", "token") from a no-echo
// prompt on a terminal, or one
// line of stdin when piped. Never from argv or the environment.
func readSecret(e env, what, prompt string) (provider.Secret, error) {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(e.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the %s: %w", what, err)
		}
		if len(b) == 0 {
			return "", usagef("empty %s", what)
		}
		return provider.Secret(b), nil
	}
	line, err := bufio.NewReader(io.LimitReader(e.stdin, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the %s from stdin: %w", what, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no %s on stdin (pipe it in, or run on a terminal to be prompted)", what)
	}
	return provider.Secret(line), nil
}

// everRealWebLogin runs the authorization-code flow with PKCE (S256) and a
// state value, receiving the code on a loopback listener on a free port.
//
// A username, when given, goes along as login_hint, so the provider's login
// page can offer that account.
func everRealWebLogin(e env, client *everreal.Client, username, redirectURL string, timeout time.Duration) (provider.Token, error) {
	verifier := randomString(48)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	state := randomString(24)

	addr, path, err := loopbackRedirect(redirectURL)
	if err != nil {
		return provider.Token{}, usagef("-redirect-url: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return provider.Token{}, fmt.Errorf("opening a loopback listener for the redirect on %s: %w", addr, err)
	}
	redirect := fmt.Sprintf("http://%s%s", ln.Addr(), path)
	if redirectURL != "" {
		redirect = redirectURL // exactly as registered
	}
	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			// Not the login we wait for: any local user or web page can
			// send this. Refuse it and go on waiting for the real one.
			http.Error(w, "syncer: this is not the login syncer is waiting for (different state value); ignored", http.StatusBadRequest)
			fmt.Fprintln(e.stderr, "syncer: ignored a callback with a different state value (not this login); still waiting")
			return
		}
		var res result
		switch {
		case q.Get("error") != "":
			res.err = fmt.Errorf("everreal: login refused: %s %s", cleanParam(q.Get("error")), cleanParam(q.Get("error_description")))
		case q.Get("code") == "":
			res.err = errors.New("everreal: the browser came back without a code")
		default:
			res.code = q.Get("code")
		}
		if res.err != nil {
			http.Error(w, "syncer: "+res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "syncer: logged in. You can close this window.")
		}
		select {
		case got <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer shutdown(srv)

	authURL := client.AuthorizeURL(redirect, state, challenge)
	if username != "" {
		authURL += "&login_hint=" + url.QueryEscape(username)
	}
	fmt.Fprintf(e.stdout, "Open this address in a browser and log in to EverReal:\n\n  %s\n\nWaiting up to %s for the login...\n",
		authURL, timeout)
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	select {
	case <-ctx.Done():
		if e.ctx.Err() != nil {
			return provider.Token{}, e.ctx.Err()
		}
		return provider.Token{}, fmt.Errorf("everreal: no login arrived within %s (raise -timeout, or use the password grant with -username)", timeout)
	case res := <-got:
		if res.err != nil {
			return provider.Token{}, res.err
		}
		return client.ExchangeCode(e.ctx, res.code, redirect, verifier)
	}
}

// loopbackRedirect is the address to listen on and the path to answer for
// a redirect URL: a free loopback port when none is given; otherwise the
// given one, which must be http on a loopback address with a port.
func loopbackRedirect(raw string) (addr, path string, err error) {
	if raw == "" {
		return "127.0.0.1:0", "/callback", nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return "", "", fmt.Errorf("%q: give http://127.0.0.1:PORT/PATH, the loopback address registered with the provider", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", "", fmt.Errorf("%q: the host must be a loopback address (127.0.0.1, [::1] or localhost): syncer listens there for the browser", raw)
	}
	path = u.Path
	if path == "" {
		path = "/"
	}
	return u.Host, path, nil
}

// shutdown stops a loopback listener, letting an answer being written reach
// the browser first, so the person sees the page that says what happened.
func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		srv.Close()
	}
}

func cleanParam(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func setupConnectEstateGuru(fs *flag.FlagSet) func(e env, args []string) error {
	name := fs.String("name", "", "connection `name`, as it will appear in reports")
	rawURL := fs.String("url", "", "EstateGuru base `URL` (default SYNCER_ESTATEGURU_URL)")
	redirectURL := fs.String("redirect-url", "", "redirect `URL` registered with EstateGuru (default: a loopback listener on a free port)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the browser, if EstateGuru sends you to a page")
	return func(e env, args []string) error {
		if len(args) > 0 {
			return usagef("connect estateguru takes no arguments (unexpected %q)", args[0])
		}
		return connectEstateGuru(e, name, rawURL, redirectURL, timeout)
	}
}

func connectEstateGuru(e env, name, rawURL, redirectURL *string, timeout *time.Duration) error {
	if err := checkName(*name); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("-timeout must be positive (try 5m)")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	base := a.cfg.EstateGuruURL
	if *rawURL != "" {
		base = *rawURL
	}
	if base, err = normalizeBaseURL(base); err != nil {
		return usagef("-url: %v", err)
	}
	if err := a.needCredentials(estateguru.Name); err != nil {
		return err
	}
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	if err := checkNameFree(e, a, *name, estateguru.Name); err != nil {
		return err
	}
	client := a.estateGuru(base)

	// Without a registered redirect URL, listen on loopback so that an
	// answer sending the person to a page can come back to us.
	var callbacks chan callback
	redirect := *redirectURL
	if redirect == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("opening a loopback listener for the redirect: %w", err)
		}
		redirect = fmt.Sprintf("http://%s/callback", ln.Addr())
		callbacks = make(chan callback)
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/callback" {
				http.NotFound(w, r)
				return
			}
			_ = r.ParseForm()
			// The waiting loop judges it and says what to answer.
			cb := callback{form: r.Form, answer: make(chan error, 1)}
			select {
			case callbacks <- cb:
			case <-r.Context().Done():
				return
			}
			if err := <-cb.answer; err != nil {
				http.Error(w, "syncer: "+err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintln(w, "syncer: received. You can close this window.")
		})}
		go srv.Serve(ln)
		defer shutdown(srv)
	}
	auth, err := client.Authorize(e.ctx, redirect)
	if err != nil {
		return err
	}
	tok := auth.Token
	if tok.Refresh.IsZero() {
		if auth.RedirectTo == "" {
			return errors.New("estateguru: authorize answered neither tokens nor a page to open")
		}
		fmt.Fprintf(e.stdout, "Open this address in a browser and approve syncer at EstateGuru:\n\n  %s\n\n", auth.RedirectTo)
		if callbacks == nil {
			return fmt.Errorf("estateguru: the tokens will arrive at %s; run without -redirect-url to receive them here", redirect)
		}
		fmt.Fprintf(e.stdout, "Waiting up to %s...\n", *timeout)
		ctx, cancel := context.WithTimeout(e.ctx, *timeout)
		defer cancel()
	wait:
		for {
			select {
			case <-ctx.Done():
				if e.ctx.Err() != nil {
					return e.ctx.Err()
				}
				return fmt.Errorf("estateguru: no approval arrived within %s (raise -timeout and try again)", *timeout)
			case cb := <-callbacks:
				// A callback for another request (any local user or web
				// page can send one) is refused, and the wait goes on.
				if !estateguru.CallbackMatches(cb.form, auth.RequestID) {
					cb.answer <- errors.New("this is not the approval syncer is waiting for (request id mismatch); ignored")
					fmt.Fprintln(e.stderr, "syncer: ignored a callback for another request (request id mismatch); still waiting")
					continue
				}
				tok, err = client.ParseCallback(cb.form, auth.RequestID)
				cb.answer <- err
				if err != nil {
					return err
				}
				break wait
			}
		}
	}
	return saveConnection(e, a, *name, estateguru.Name, base, tok, false)
}

// callback is one request to the loopback listener, and the way to answer it.
type callback struct {
	form   url.Values
	answer chan error // nil: accepted
}

// cmdImport stores a refresh token obtained elsewhere, read from stdin. The
// token is checked with one refresh before anything is stored.
func setupImport(fs *flag.FlagSet) func(e env, args []string) error {
	providerName := fs.String("provider", "", "`provider`: everreal or estateguru")
	name := fs.String("name", "", "connection `name`, as it will appear in reports")
	rawURL := fs.String("url", "", "provider base `URL`")
	subdomain := fs.String("subdomain", "", "EverReal `subdomain` instead of -url")
	return func(e env, args []string) error {
		if len(args) > 0 {
			return usagef("import takes no arguments (unexpected %q; the token is read from stdin)", args[0])
		}
		return importToken(e, providerName, name, rawURL, subdomain)
	}
}

func importToken(e env, providerName, name, rawURL, subdomain *string) error {
	if err := checkName(*name); err != nil {
		return err
	}
	if *providerName != everreal.Name && *providerName != estateguru.Name {
		return usagef("import needs -provider everreal or -provider estateguru")
	}
	var base string
	var err error
	if *providerName == everreal.Name {
		if base, err = everRealBase(*subdomain, *rawURL); err != nil {
			return err
		}
	} else if *subdomain != "" {
		return usagef("-subdomain is for EverReal; EstateGuru takes -url")
	}
	a, err := newApp(e)
	if err != nil {
		return err
	}
	defer a.close()
	if *providerName == estateguru.Name {
		base = a.cfg.EstateGuruURL
		if *rawURL != "" {
			base = *rawURL
		}
		if base, err = normalizeBaseURL(base); err != nil {
			return usagef("-url: %v", err)
		}
	}
	refresh, err := readSecret(e, "token", "refresh token: ")
	if err != nil {
		return err
	}
	if err := a.openStore(e.ctx); err != nil {
		return err
	}
	if err := a.needCredentials(*providerName); err != nil {
		return err
	}
	var tok provider.Token
	switch *providerName {
	case everreal.Name:
		tok, err = a.everReal(base).Refresh(e.ctx, refresh)
	case estateguru.Name:
		tok, err = a.estateGuru(base).Refresh(e.ctx, refresh)
	}
	if err != nil {
		return fmt.Errorf("the token was not imported: %w", err)
	}
	return saveConnection(e, a, *name, *providerName, base, tok, false)
}
