package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/syncerhq/syncer/sync/provider"
)

// PingTimeout bounds one ping: a ping never delays a run longer.
const PingTimeout = 5 * time.Second

// Pinger pings a check in the healthchecks.io convention (also served by
// Uptime Kuma push monitors and others): <url>/start when a run starts,
// <url> when it succeeded, <url>/fail when it did not, each with a short
// plain-text body. A ping that fails is logged at WARN and never fails or
// holds up the run for more than PingTimeout.
type Pinger struct {
	URL    string
	Client *http.Client
	Log    *slog.Logger
}

// CheckURL checks a ping or webhook URL. Its errors never quote the URL,
// whose path often is the secret (a check's UUID, a token).
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("the scheme must be https or http")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// Start pings <url>/start.
func (p *Pinger) Start(ctx context.Context, body string) { p.ping(ctx, "/start", body) }

// Finish pings <url> when ok, else <url>/fail.
func (p *Pinger) Finish(ctx context.Context, ok bool, body string) {
	if ok {
		p.ping(ctx, "", body)
	} else {
		p.ping(ctx, "/fail", body)
	}
}

func (p *Pinger) ping(ctx context.Context, suffix, body string) {
	if p == nil || p.URL == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PingTimeout)
	defer cancel()
	u, err := url.Parse(p.URL)
	if err != nil {
		return // checked at start-up
	}
	u.Path = strings.TrimRight(u.Path, "/") + suffix
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "syncer")
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	what := "success"
	if suffix != "" {
		what = strings.TrimPrefix(suffix, "/")
	}
	resp, err := client.Do(req)
	if err != nil {
		p.log().Warn("ping failed; the run goes on", "ping", what, "kind", errorKind(err))
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		p.log().Warn("ping failed; the run goes on", "ping", what, "kind", "status", "status", resp.StatusCode)
	}
}

func (p *Pinger) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

// errorKind names a delivery error's kind without its text, which may
// quote the URL.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "network (" + oe.Op + ")"
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "dns"
	}
	return "transport"
}

// URLSecrets lists the parts of a URL that may be secret: user info, and
// path segments and query values of 8 characters or more (tokens, UUIDs;
// shorter ones such as "hook" are words that would be blanked everywhere),
// for scrubbing texts that may quote it.
func URLSecrets(raw string) []string {
	out := []string{raw}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	if u.User != nil {
		out = append(out, u.User.Username())
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		}
	}
	long := func(s string) {
		if len(s) >= 8 {
			out = append(out, s)
		}
	}
	for _, seg := range strings.Split(u.Path, "/") {
		long(seg)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			long(v)
		}
	}
	long(u.Fragment)
	if u.Opaque != "" {
		long(u.Opaque)
	}
	return out
}

// scrubURL removes a URL's secret parts from text.
func scrubURL(text, raw string) string {
	return provider.ScrubText(text, URLSecrets(raw)...)
}

// RedactedURL is a URL fit for a log line: scheme and host only.
func RedactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%s://%s/...", u.Scheme, u.Hostname())
}
