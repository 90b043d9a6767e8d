package provider

import (
	"fmt"
	"net"
	"net/url"
)

// CheckBaseURL is the rule every provider base URL obeys, checked when a
// connection is made and again before every sync (the copy in snapshots.db
// can be edited by anyone who can write that file): https, or http only to a
// loopback host (the sandbox), so a token never crosses a network in the
// clear; and a plain base URL, without credentials, query or fragment.
func CheckBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL (try %q)", raw, "https://estateguru.co")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be a plain base URL, without credentials, query or fragment", redactURL(u))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q uses http: tokens would cross the network unencrypted; use https (http is allowed only for loopback, such as the sandbox)", raw)
	}
	return fmt.Errorf("%q: scheme must be https", redactURL(u))
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}
