package estateguru

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/sync/provider"
)

// TestBasicCredentialsEchoedAreScrubbed: a provider echoing the
// Authorization header (in any base64 alphabet, padded or not) or an
// upper-cased token puts neither the client secret nor the token into an
// error (and so into logs, connection.last_error or sync_results).
func TestBasicCredentialsEchoedAreScrubbed(t *testing.T) {
	const refresh = "refresh-canary-6"
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		forms := provider.BasicForms(s.User, s.Pass)
		echo := strings.Join(append(forms, s.Authorization, strings.ToUpper(s.Form.Get("refresh_token"))), " ")
		desc, _ := json.Marshal("you sent " + echo)
		writeJSON(w, 400, `{"error":"invalid_grant","error_description":`+string(desc)+`}`)
	})
	c := f.client()
	_, err := c.Refresh(context.Background(), refresh)
	if err == nil {
		t.Fatal("err = nil, want an error")
	}
	leaks := append(provider.BasicForms(c.ClientID, c.ClientSecret.Reveal()), strings.ToUpper(refresh))
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err)} {
		for _, l := range leaks {
			if strings.Contains(text, l) {
				t.Fatalf("error text %q leaks %q", text, l)
			}
		}
		if !strings.Contains(text, provider.Redacted) {
			t.Fatalf("error text %q: want the echo redacted", text)
		}
	}
}
