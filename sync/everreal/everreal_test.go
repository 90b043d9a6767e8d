package everreal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/syncerhq/syncer/sync/provider"
)

// From EverReal's authentication doc: its sample tokens. The refresh token's
// exp is 1631184656 (2021-09-09T10:50:56Z).
const (
	seedAccess     = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiJjYTdhZDI2MC1mNmE3LTQ1OWEtOWNjYy1kNTMzMzNjY2M1Y2EiLCJzdWIiOiI3NmFmY2FiMC02NTJiLTQ1NDctODAxYi03YzcwMWMwOTdiODEiLCJleHAiOjE2Mjg1OTYyNTYsImlhdCI6MTYyODU5MjY1Nn0.nnBmf0r7oTsqDYxwkA9seO-aZGhLY3z-ZodFn2NSa9gPOxCCtXvACj7UNIifd03KbqLDiJcpqj5anUzyKpXY0taXRCPMVHB78iVYDyKR8rZqNZ7PP8XSXvxxLaZPfTiqYG01pzCgaDWHwgpUsBoFRJDr2rPt1ShD6Pe-efcZIQfS81jGUAw4dYAwnot6zNC6uNY8OkihEUEwnsVI1mCfjvmrWL6cHmL-YSko-gPUGAjF1ulSJZ68CcMTrsC2tXnWLAMyiJMu9_VWoLXUgQJH2FzISeJkyPCJbnzDlMmAYfe8Kq0z8QL_l2q_cs2aOAvre-jJpyri-dsP-6hR2ODL4g"
	seedRefresh    = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiI2ZWU5YzFhNi1hMWM5LTQwOWQtYjJjOS03NjdlZGRlMzAwNDQiLCJzdWIiOiI3NmFmY2FiMC02NTJiLTQ1NDctODAxYi03YzcwMWMwOTdiODEiLCJleHAiOjE2MzExODQ2NTYsImlhdCI6MTYyODU5MjY1Nn0.IcdmncHIE3PTxix5QS5bZAm3JsPDprRqyEU6pEk09mViV-V9F8EWlYofDuQglfB5vNe_oBzZWmu3wdxGm7hO-9Z_sveI6OEBy-mv_-bHarIRytToH7zjSkl4BO_l-s48hwxGVYyQLtFX1G9vU-ykJ4Bwd4M6V1Z-0gwW65MCFn6CXgAz8lXgDLoLorwoxGjZVMKFmjNQcNLLdcLXDNXXYdU6d2bjJQLz6hzixbqhUFYbR6hZUbEJ6cBZsKWZjsvDydtJ9froWR3d4C4tbYkirmSGvZHjvtwVrjKnoHtAd0MQ8UVTKxrH7jTcATrCmWDaxyW2XFcd7HtuI3_TdQH8aw"
	seedRefreshExp = 1631184656

	seedUserAnswer = `{
    "id": "76dccab0-652e-4543-802c-7c701c098ad3",
    "email": "john.doe@ovooovo.com",
    "isActive": true,
    "firstName": null,
    "lastName": null,
    "profilePhoto": null,
    "profileData": {
        "language": "en-US"
    },
    "isTenant": false,
    "createdAt": "2021-07-19T14:21:50.215Z",
    "updatedAt": "2021-07-19T14:21:50.215Z",
    "areTermsAccepted": true,
    "companies": [
        {
            "id": "76dccab0-652e-4543-802c-7c701c0b3bb3",
            "name": "automation-reporting-qa",
            "isDefault": true
        }
    ],
    "currentCompany": {
        "id": "76dccab0-652e-4543-802c-7c701c0b3bb3",
        "name": "automation-reporting-qa",
        "partner": {
            "id": "76dccab0-652e-4543-802c-7c701c046579",
            "name": "test-documentation",
            "subdomain": "test-documentation"
        },
        "isDefault": true
    },
    "tokenInfo": {
        "audience": "76dccab0-652e-4543-802c-7c701c0a68f6",
        "scope": [
            "offline_access",
            "company_contracting_edit_contract",
            "message_templates_all",
            "company_portfolio_all",
            "company_user",
            "email_templates_all"
        ],
        "user_id": "76dccab0-652e-4543-802c-7c701c097b81",
        "expires_in": 3571
    }
}`
)

// Canaries: values that must never show up in an error.
const (
	canaryPassword     = "pw-CANARY-7f3a9c2e1b"
	canaryClientSecret = "cs-CANARY-4d8e6f0a2c"
	canaryRefresh      = "rt-CANARY-9b1d3f5a7c+/&="
	canaryAccess       = "at-CANARY-2e4f6a8c0d"
	canaryCode         = "code-CANARY-5c7e9a1b3d"
	canaryVerifier     = "vf-CANARY-0123456789abcdefghijklmnopqrstuvwxyz"
)

var allCanaries = []string{canaryPassword, canaryClientSecret, canaryRefresh, canaryAccess, canaryCode, canaryVerifier}

var fixedNow = time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)

// seen is one request as the fake provider received it.
type seen struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// fake serves answer for every request and records what arrived.
func fake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) (*Client, <-chan seen) {
	t.Helper()
	reqs := make(chan seen, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body}
		answer(w, r, body)
	}))
	t.Cleanup(srv.Close)
	return &Client{
		BaseURL:      srv.URL + "/",
		ClientID:     "client-id-1",
		ClientSecret: canaryClientSecret,
		HTTP: &provider.HTTP{
			Client:  srv.Client(),
			Timeout: 10 * time.Second,
			Retries: 3,
			Sleep:   func(context.Context, time.Duration) error { return nil },
		},
		Now: func() time.Time { return fixedNow },
	}, reqs
}

func reply(status int, contentType, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func jsonReply(status int, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return reply(status, "application/json; charset=utf-8", body)
}

func one(t *testing.T, reqs <-chan seen) seen {
	t.Helper()
	select {
	case r := <-reqs:
		return r
	default:
		t.Fatal("no request reached the fake provider")
		return seen{}
	}
}

func count(reqs <-chan seen) int {
	n := 0
	for {
		select {
		case <-reqs:
			n++
		default:
			return n
		}
	}
}

// checkTokenRequest checks a grant's request shape: POST, JSON, exactly the
// given fields.
func checkTokenRequest(t *testing.T, r seen, want map[string]string) {
	t.Helper()
	if got, want := r.Method, http.MethodPost; got != want {
		t.Fatalf("method = %s, want %s", got, want)
	}
	if got, want := r.Path, "/accounts/oauth/token"; got != want {
		t.Fatalf("path = %s, want %s", got, want)
	}
	if got, want := r.Header.Get("Content-Type"), "application/json"; got != want {
		t.Fatalf("Content-Type = %q, want %q", got, want)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.Body, &fields); err != nil {
		t.Fatalf("request body is not a JSON object: %v", err)
	}
	if got, want := len(fields), len(want); got != want {
		t.Fatalf("request has %d fields, want %d: %s", got, want, r.Body)
	}
	for k, v := range want {
		if got, ok := fields[k].(string); !ok || got != v {
			t.Fatalf("field %s = %#v, want %q", k, fields[k], v)
		}
	}
}

func makeJWT(t testing.TB, claims string, pad bool) string {
	t.Helper()
	enc := base64.RawURLEncoding
	if pad {
		enc = base64.URLEncoding
	}
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(claims)) + "." +
		enc.EncodeToString([]byte("not a real signature"))
}

func kindOf(t *testing.T, err error) provider.Kind {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	if got, want := pe.Provider, Name; got != want {
		t.Fatalf("error provider = %q, want %q", got, want)
	}
	return pe.Kind
}

func TestPasswordGrant(t *testing.T) {
	c, reqs := fake(t, jsonReply(200, `{"access_token":"`+seedAccess+`","refresh_token":"`+seedRefresh+`","expires_in":3600,"token_type":"Bearer"}`))
	tok, err := c.PasswordGrant(context.Background(), "john.doe@everreal.co", canaryPassword)
	if err != nil {
		t.Fatal(err)
	}
	checkTokenRequest(t, one(t, reqs), map[string]string{
		"username":      "john.doe@everreal.co",
		"password":      canaryPassword,
		"client_id":     "client-id-1",
		"client_secret": canaryClientSecret,
		"scope":         "offline_access *",
		"grant_type":    "password",
	})
	if got, want := tok.Access.Reveal(), seedAccess; got != want {
		t.Fatalf("access = %q, want the seed's", got)
	}
	if got, want := tok.Refresh.Reveal(), seedRefresh; got != want {
		t.Fatalf("refresh = %q, want the seed's", got)
	}
	if got, want := tok.AccessExpiresAt, fixedNow.Add(time.Hour); !got.Equal(want) {
		t.Fatalf("access expires at %v, want %v", got, want)
	}
	if got, want := tok.RefreshExpiresAt, time.Unix(seedRefreshExp, 0).UTC(); !got.Equal(want) {
		t.Fatalf("refresh expires at %v, want %v", got, want)
	}
}

func TestPasswordGrantIsSentOnce(t *testing.T) {
	// Every successful login can evict a stored refresh token: a 503 must not
	// be retried even though the client's policy allows retries.
	c, reqs := fake(t, jsonReply(503, `{"error":"temporarily_unavailable"}`))
	_, err := c.PasswordGrant(context.Background(), "john.doe@everreal.co", canaryPassword)
	if got, want := kindOf(t, err), provider.KindTransient; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if got, want := count(reqs), 1; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func TestPasswordGrantWithoutRefreshToken(t *testing.T) {
	c, _ := fake(t, jsonReply(200, `{"access_token":"a","expires_in":3600}`))
	_, err := c.PasswordGrant(context.Background(), "john.doe@everreal.co", canaryPassword)
	if got, want := kindOf(t, err), provider.KindBadAnswer; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "refresh_token") {
		t.Fatalf("error %q does not name the missing refresh_token", err)
	}
}

func TestRefreshStringExpiresInKeepsRefreshToken(t *testing.T) {
	// The doc's refresh answer, verbatim.
	c, reqs := fake(t, jsonReply(200, `{
"access_token": "NEW TOKEN",
"expires_in": "3600" 
}`))
	tok, err := c.Refresh(context.Background(), seedRefresh)
	if err != nil {
		t.Fatal(err)
	}
	checkTokenRequest(t, one(t, reqs), map[string]string{
		"grant_type":    "refresh_token",
		"client_id":     "client-id-1",
		"client_secret": canaryClientSecret,
		"refresh_token": seedRefresh,
	})
	if got, want := tok.Access.Reveal(), "NEW TOKEN"; got != want {
		t.Fatalf("access = %q, want %q", got, want)
	}
	if got, want := tok.Refresh.Reveal(), seedRefresh; got != want {
		t.Fatalf("refresh = %q, want the one passed in", got)
	}
	if got, want := tok.AccessExpiresAt, fixedNow.Add(time.Hour); !got.Equal(want) {
		t.Fatalf("access expires at %v, want %v", got, want)
	}
	if got, want := tok.RefreshExpiresAt, time.Unix(seedRefreshExp, 0).UTC(); !got.Equal(want) {
		t.Fatalf("refresh expires at %v, want %v", got, want)
	}
}

func TestRefreshRotated(t *testing.T) {
	exp := fixedNow.Add(28 * 24 * time.Hour)
	rotated := makeJWT(t, fmt.Sprintf(`{"sub":"u","exp":%d,"iat":1}`, exp.Unix()), false)
	c, _ := fake(t, jsonReply(200, `{"access_token":"new-access","refresh_token":"`+rotated+`","expires_in":"1800"}`))
	tok, err := c.Refresh(context.Background(), seedRefresh)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Refresh.Reveal(), rotated; got != want {
		t.Fatalf("refresh = %q, want the rotated one", got)
	}
	if got, want := tok.RefreshExpiresAt, exp; !got.Equal(want) {
		t.Fatalf("refresh expires at %v, want %v", got, want)
	}
	if got, want := tok.AccessExpiresAt, fixedNow.Add(30*time.Minute); !got.Equal(want) {
		t.Fatalf("access expires at %v, want %v", got, want)
	}
}

func TestRefreshLenientAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		wantAccess   time.Time
	}{
		{"no expires_in", `{"access_token":"x"}`, fixedNow.Add(time.Hour)},
		{"null expires_in", `{"access_token":"x","expires_in":null}`, fixedNow.Add(time.Hour)},
		{"garbage expires_in", `{"access_token":"x","expires_in":"soon"}`, fixedNow.Add(time.Hour)},
		{"zero expires_in", `{"access_token":"x","expires_in":0}`, fixedNow.Add(time.Hour)},
		{"huge expires_in", `{"access_token":"x","expires_in":"99999999999999999"}`, fixedNow.Add(366 * 24 * time.Hour)},
		{"unknown fields", `{"access_token":"x","expires_in":7200,"scope":["a"],"id_token":null}`, fixedNow.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An unreadable refresh token (not a JWT) must not fail the
			// refresh: it only leaves RefreshExpiresAt unknown.
			c, _ := fake(t, jsonReply(200, tc.answer))
			tok, err := c.Refresh(context.Background(), canaryRefresh)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tok.AccessExpiresAt, tc.wantAccess; !got.Equal(want) {
				t.Fatalf("access expires at %v, want %v", got, want)
			}
			if got, want := tok.Refresh.Reveal(), canaryRefresh; got != want {
				t.Fatalf("refresh = %q, want the one passed in", got)
			}
			if !tok.RefreshExpiresAt.IsZero() {
				t.Fatalf("refresh expires at %v, want zero for a token that is not a JWT", tok.RefreshExpiresAt)
			}
		})
	}
}

func TestInvalidGrantIsReauth(t *testing.T) {
	// The doc's bad-user answer: 403, not 400, so the code must decide.
	const answer = `{"error":"invalid_grant","error_description":"heimdall.validation.user.does.not.exist"}`
	for _, tc := range []struct {
		name string
		call func(*Client) error
	}{
		{"password grant", func(c *Client) error {
			_, err := c.PasswordGrant(context.Background(), "nobody@example.com", canaryPassword)
			return err
		}},
		{"refresh", func(c *Client) error { _, err := c.Refresh(context.Background(), seedRefresh); return err }},
		{"code exchange", func(c *Client) error {
			_, err := c.ExchangeCode(context.Background(), canaryCode, "https://app.example/cb", canaryVerifier)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, reqs := fake(t, jsonReply(403, answer))
			err := tc.call(c)
			if got, want := kindOf(t, err), provider.KindReauth; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if got, want := count(reqs), 1; got != want {
				t.Fatalf("requests = %d, want %d: invalid_grant is final", got, want)
			}
			var pe *provider.Error
			errors.As(err, &pe)
			if got, want := pe.Op, tc.name; got != want {
				t.Fatalf("op = %q, want %q", got, want)
			}
			for _, s := range []string{"everreal: " + tc.name, "invalid_grant", "HTTP 403", "heimdall.validation.user.does.not.exist"} {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestInvalidGrantIn200IsReauth(t *testing.T) {
	c, _ := fake(t, jsonReply(200, `{"error":"invalid_grant"}`))
	_, err := c.Refresh(context.Background(), seedRefresh)
	if got, want := kindOf(t, err), provider.KindReauth; got != want {
		t.Fatalf("kind = %v, want %v (%v)", got, want, err)
	}
}

func TestMe(t *testing.T) {
	c, reqs := fake(t, jsonReply(200, seedUserAnswer))
	u, err := c.Me(context.Background(), canaryAccess)
	if err != nil {
		t.Fatal(err)
	}
	r := one(t, reqs)
	if got, want := r.Method, http.MethodGet; got != want {
		t.Fatalf("method = %s, want %s", got, want)
	}
	if got, want := r.Path, "/accounts/api/users/me"; got != want {
		t.Fatalf("path = %s, want %s", got, want)
	}
	if got, want := r.Header.Get("Authorization"), "Bearer "+canaryAccess; got != want {
		t.Fatalf("Authorization = %q, want %q", got, want)
	}
	if got, want := r.Header.Get("Content-Type"), "application/json"; got != want {
		t.Fatalf("Content-Type = %q, want %q", got, want)
	}
	for _, f := range []struct{ name, got, want string }{
		{"ID", u.ID, "76dccab0-652e-4543-802c-7c701c098ad3"},
		{"Email", u.Email, "john.doe@ovooovo.com"},
		{"FirstName", u.FirstName, ""},
		{"LastName", u.LastName, ""},
		{"Language", u.Language, "en-US"},
		{"CompanyID", u.CompanyID, "76dccab0-652e-4543-802c-7c701c0b3bb3"},
		{"CompanyName", u.CompanyName, "automation-reporting-qa"},
		{"PartnerID", u.PartnerID, "76dccab0-652e-4543-802c-7c701c046579"},
		{"PartnerName", u.PartnerName, "test-documentation"},
		{"PartnerSubdomain", u.PartnerSubdomain, "test-documentation"},
	} {
		if f.got != f.want {
			t.Fatalf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
	for _, f := range []struct {
		name      string
		got, want bool
	}{
		{"IsActive", u.IsActive, true},
		{"IsTenant", u.IsTenant, false},
		{"TermsAccepted", u.TermsAccepted, true},
	} {
		if f.got != f.want {
			t.Fatalf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if got, want := u.Companies, []Company{{ID: "76dccab0-652e-4543-802c-7c701c0b3bb3", Name: "automation-reporting-qa", IsDefault: true}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Companies = %+v, want %+v", got, want)
	}
	wantScopes := []string{"offline_access", "company_contracting_edit_contract", "message_templates_all",
		"company_portfolio_all", "company_user", "email_templates_all"}
	if got, want := u.Scopes, wantScopes; !reflect.DeepEqual(got, want) {
		t.Fatalf("Scopes = %q, want %q", got, want)
	}
	if got, want := string(u.Raw), seedUserAnswer; got != want {
		t.Fatalf("Raw is not the answer as received:\n%s", got)
	}
}

func TestMeTolerant(t *testing.T) {
	c, _ := fake(t, jsonReply(200, `{"id":"u1","email":null,"profileData":null,"companies":null,
		"currentCompany":{"partner":null},"tokenInfo":{"scope":"offline_access  company_user"},"somethingNew":{"a":[1,2]}}`))
	u, err := c.Me(context.Background(), canaryAccess)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.ID, "u1"; got != want {
		t.Fatalf("ID = %q, want %q", got, want)
	}
	if got, want := u.Scopes, []string{"offline_access", "company_user"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Scopes = %q, want %q", got, want)
	}
	if u.Companies != nil || u.Email != "" || u.PartnerID != "" {
		t.Fatalf("nulls did not decode to zero values: %+v", u)
	}
}

func TestMeWithoutIDIsBadAnswer(t *testing.T) {
	c, _ := fake(t, jsonReply(200, `{"email":"john.doe@ovooovo.com"}`))
	_, err := c.Me(context.Background(), canaryAccess)
	if got, want := kindOf(t, err), provider.KindBadAnswer; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "no id") {
		t.Fatalf("error %q does not say the id is missing", err)
	}
}

func TestMeUnauthorizedIsInvalidToken(t *testing.T) {
	for _, body := range []string{"", `{"error":"invalid_token","error_description":"jwt expired"}`, `Unauthorized`} {
		c, reqs := fake(t, jsonReply(401, body))
		_, err := c.Me(context.Background(), canaryAccess)
		if got, want := kindOf(t, err), provider.KindInvalidToken; got != want {
			t.Fatalf("body %q: kind = %v, want %v (%v)", body, got, want, err)
		}
		if got, want := count(reqs), 1; got != want {
			t.Fatalf("requests = %d, want %d: a refused token is not retried", got, want)
		}
	}
}

func TestHTMLAnswerIsBadAnswer(t *testing.T) {
	const page = "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"
	c, _ := fake(t, reply(200, "text/html; charset=utf-8", page))
	_, err := c.Refresh(context.Background(), seedRefresh)
	if got, want := kindOf(t, err), provider.KindBadAnswer; got != want {
		t.Fatalf("refresh kind = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "HTML") {
		t.Fatalf("error %q does not say HTML", err)
	}
	_, err = c.Me(context.Background(), canaryAccess)
	if got, want := kindOf(t, err), provider.KindBadAnswer; got != want {
		t.Fatalf("users/me kind = %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "HTML") {
		t.Fatalf("error %q does not say HTML", err)
	}
}

func TestBrokenTokenAnswers(t *testing.T) {
	for _, tc := range []struct{ name, body, say string }{
		{"truncated", `{"access_token":"eyJhbGciOiJSUzI1NiIsInR5cCI6`, "truncated"},
		{"not JSON", `access_token=x&expires_in=3600`, "not JSON"},
		{"empty", ``, "empty"},
		{"no access_token", `{"refresh_token":"x","expires_in":3600}`, "no access_token"},
		{"access_token not a string", `{"access_token":42}`, "access_token"},
		{"JSON array", `[{"access_token":"x"}]`, "JSON"},
		{"null", `null`, "no access_token"},
		{"control characters", `{"access_token":"a\nb"}`, "control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := fake(t, jsonReply(200, tc.body))
			_, err := c.Refresh(context.Background(), seedRefresh)
			if got, want := kindOf(t, err), provider.KindBadAnswer; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("error %q does not say %q", err, tc.say)
			}
		})
	}
}

func TestOversizedAnswer(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`
	c, _ := fake(t, jsonReply(200, big))
	_, err := c.Refresh(context.Background(), seedRefresh)
	if got, want := kindOf(t, err), provider.KindBadAnswer; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if !errors.Is(err, provider.ErrTooLarge) {
		t.Fatalf("error %v does not wrap provider.ErrTooLarge", err)
	}
}

func TestRevoke(t *testing.T) {
	c, reqs := fake(t, reply(200, "text/plain", ""))
	if err := c.Revoke(context.Background(), canaryRefresh); err != nil {
		t.Fatal(err)
	}
	r := one(t, reqs)
	if got, want := r.Method, http.MethodPost; got != want {
		t.Fatalf("method = %s, want %s", got, want)
	}
	if got, want := r.Path, "/accounts/api/tokenrevoke"; got != want {
		t.Fatalf("path = %s, want %s", got, want)
	}
	q, err := url.ParseQuery(r.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := q.Get("token"), canaryRefresh; got != want {
		t.Fatalf("token = %q, want %q (escaping lost characters)", got, want)
	}
}

func TestRevokeIsSentOnce(t *testing.T) {
	c, reqs := fake(t, jsonReply(503, `{"error":"server_error"}`))
	err := c.Revoke(context.Background(), canaryRefresh)
	if got, want := kindOf(t, err), provider.KindTransient; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if got, want := count(reqs), 1; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func TestAuthorizeURL(t *testing.T) {
	c := &Client{BaseURL: "https://acme.everreal.co/", ClientID: "client-id-1"}
	raw := c.AuthorizeURL("https://app.example/cb?x=1", "state-123", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Scheme+"://"+u.Host+u.Path, "https://acme.everreal.co/accounts/dialog/authorize"; got != want {
		t.Fatalf("endpoint = %q, want %q", got, want)
	}
	q := u.Query()
	if got, want := len(q), 7; got != want {
		t.Fatalf("query has %d parameters, want %d: %s", got, want, u.RawQuery)
	}
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             "client-id-1",
		"redirect_uri":          "https://app.example/cb?x=1",
		"scope":                 "offline_access *",
		"state":                 "state-123",
		"code_challenge":        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		"code_challenge_method": "S256",
	} {
		if got := q.Get(k); got != want {
			t.Fatalf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestExchangeCode(t *testing.T) {
	c, reqs := fake(t, jsonReply(200, `{"access_token":"a1","refresh_token":"`+seedRefresh+`","expires_in":3600,"token_type":"Bearer"}`))
	tok, err := c.ExchangeCode(context.Background(), canaryCode, "https://app.example/cb", canaryVerifier)
	if err != nil {
		t.Fatal(err)
	}
	checkTokenRequest(t, one(t, reqs), map[string]string{
		"grant_type":    "authorization_code",
		"client_id":     "client-id-1",
		"client_secret": canaryClientSecret,
		"code":          canaryCode,
		"redirect_uri":  "https://app.example/cb",
		"code_verifier": canaryVerifier,
	})
	if got, want := tok.Access.Reveal(), "a1"; got != want {
		t.Fatalf("access = %q, want %q", got, want)
	}
	if got, want := tok.RefreshExpiresAt, time.Unix(seedRefreshExp, 0).UTC(); !got.Equal(want) {
		t.Fatalf("refresh expires at %v, want %v", got, want)
	}
}

func TestExchangeCodeIsSentOnce(t *testing.T) {
	c, reqs := fake(t, jsonReply(502, `bad gateway`))
	_, err := c.ExchangeCode(context.Background(), canaryCode, "https://app.example/cb", canaryVerifier)
	if got, want := kindOf(t, err), provider.KindTransient; got != want {
		t.Fatalf("kind = %v, want %v", got, want)
	}
	if got, want := count(reqs), 1; got != want {
		t.Fatalf("requests = %d, want %d: a code is single-use", got, want)
	}
}

func TestLocalChecksSendNothing(t *testing.T) {
	c, reqs := fake(t, jsonReply(500, ``))
	noSecret := *c
	noSecret.ClientSecret = ""
	badURL := *c
	badURL.BaseURL = "ftp://user:" + canaryPassword + "@example.com"
	for _, tc := range []struct {
		name string
		kind provider.Kind
		err  error
	}{
		{"no client secret", provider.KindClient, func() error { _, err := noSecret.Refresh(context.Background(), seedRefresh); return err }()},
		{"no refresh token", provider.KindReauth, func() error { _, err := c.Refresh(context.Background(), ""); return err }()},
		{"no password", provider.KindRequest, func() error { _, err := c.PasswordGrant(context.Background(), "u@example.com", ""); return err }()},
		{"password not UTF-8", provider.KindRequest, func() error { _, err := c.PasswordGrant(context.Background(), "u@example.com", "\xff\xfe"); return err }()},
		{"short verifier", provider.KindRequest, func() error {
			_, err := c.ExchangeCode(context.Background(), canaryCode, "https://app.example/cb", "short")
			return err
		}()},
		{"no access token", provider.KindInvalidToken, func() error { _, err := c.Me(context.Background(), ""); return err }()},
		{"bad base URL", provider.KindRequest, func() error { _, err := badURL.Me(context.Background(), canaryAccess); return err }()},
		{"nothing to revoke", provider.KindRequest, c.Revoke(context.Background(), "")},
	} {
		if got, want := kindOf(t, tc.err), tc.kind; got != want {
			t.Fatalf("%s: kind = %v, want %v (%v)", tc.name, got, want, tc.err)
		}
		assertNoCanary(t, tc.err)
	}
	if got, want := count(reqs), 0; got != want {
		t.Fatalf("requests = %d, want %d", got, want)
	}
}

func assertNoCanary(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got nil")
	}
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, c := range allCanaries {
			// Any 8-character piece would do to recognize a canary: a
			// truncated description must not keep the start of one.
			for _, piece := range []string{c[:8], url.QueryEscape(c)[:8], c[len(c)-8:]} {
				if strings.Contains(text, piece) {
					t.Fatalf("error text leaks %q (from a secret): %s", piece, text)
				}
			}
		}
	}
}

// echo answers with an OAuth error whose description quotes the request:
// the worst a provider could do. pad shifts where provider's 200-rune cut
// falls.
func echo(status, pad int) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		desc := strings.Repeat("x", pad) + " " + string(body) + " " + r.URL.RawQuery + " " + r.Header.Get("Authorization")
		b, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": desc})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}
}

func TestCanarySecretsNeverInErrors(t *testing.T) {
	calls := map[string]func(*Client) error{
		"password grant": func(c *Client) error {
			_, err := c.PasswordGrant(context.Background(), "u@example.com", canaryPassword)
			return err
		},
		"refresh": func(c *Client) error { _, err := c.Refresh(context.Background(), canaryRefresh); return err },
		"code exchange": func(c *Client) error {
			_, err := c.ExchangeCode(context.Background(), canaryCode, "https://app.example/cb", canaryVerifier)
			return err
		},
		"users/me": func(c *Client) error { _, err := c.Me(context.Background(), canaryAccess); return err },
		"revoke":   func(c *Client) error { return c.Revoke(context.Background(), canaryRefresh) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			// Every cut position across the echoed request.
			for pad := 0; pad < 200; pad++ {
				c, _ := fake(t, echo(400, pad))
				assertNoCanary(t, call(c))
				if name != "revoke" { // any 2xx is a successful revoke
					c, _ = fake(t, echo(200, pad))
					assertNoCanary(t, call(c))
				}
			}
			if name == "revoke" {
				return
			}
			c, _ := fake(t, reply(200, "text/html", "<html>"+canaryPassword+canaryClientSecret+canaryRefresh+canaryAccess+"</html>"))
			assertNoCanary(t, call(c))
			c, _ = fake(t, jsonReply(200, `{"access_token":`+`"`+canaryAccess))
			assertNoCanary(t, call(c))
		})
	}
}

func TestRevokeTransportErrorHidesURL(t *testing.T) {
	c, _ := fake(t, reply(200, "text/plain", ""))
	srv := httptest.NewServer(http.NotFoundHandler())
	c.BaseURL = srv.URL
	srv.Close() // nothing listens there any more
	err := c.Revoke(context.Background(), canaryRefresh)
	if got, want := kindOf(t, err), provider.KindTransient; got != want {
		t.Fatalf("kind = %v, want %v (%v)", got, want, err)
	}
	assertNoCanary(t, err)
	if strings.Contains(err.Error(), "tokenrevoke") {
		t.Fatalf("error %q quotes the URL", err)
	}
}

func TestBaseURLForSubdomain(t *testing.T) {
	for _, tc := range []struct{ sub, want string }{
		{"acme", "https://acme.everreal.co"},
		{"test-documentation", "https://test-documentation.everreal.co"},
		{"Acme42", "https://acme42.everreal.co"},
		{"a", "https://a.everreal.co"},
		{strings.Repeat("a", 63), "https://" + strings.Repeat("a", 63) + ".everreal.co"},
	} {
		got, err := BaseURLForSubdomain(tc.sub)
		if err != nil {
			t.Fatalf("%q: %v", tc.sub, err)
		}
		if got != tc.want {
			t.Fatalf("BaseURLForSubdomain(%q) = %q, want %q", tc.sub, got, tc.want)
		}
	}
	for _, sub := range []string{"", "-acme", "acme-", "acme.everreal.co", "https://acme", "ac me", "acme_1", "äcme",
		strings.Repeat("a", 64), "acme/../x", "acme\n"} {
		if got, err := BaseURLForSubdomain(sub); err == nil {
			t.Fatalf("BaseURLForSubdomain(%q) = %q, want an error", sub, got)
		} else if !strings.Contains(err.Error(), "subdomain") {
			t.Fatalf("error %q does not say what was wrong", err)
		}
	}
}

func TestRefreshTokenExpiry(t *testing.T) {
	got, err := RefreshTokenExpiry(seedRefresh)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(seedRefreshExp, 0).UTC(); !got.Equal(want) {
		t.Fatalf("seed refresh token expires at %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name, jwt string
		want      time.Time
	}{
		{"padded", makeJWT(t, `{"exp":1700000000}`, true), time.Unix(1700000000, 0).UTC()},
		{"unpadded", makeJWT(t, `{"exp":1700000000}`, false), time.Unix(1700000000, 0).UTC()},
		{"fraction", makeJWT(t, `{"exp":1700000000.75}`, false), time.Unix(1700000000, 0).UTC()},
		{"exponent", makeJWT(t, `{"exp":1.7e9}`, false), time.Unix(1700000000, 0).UTC()},
		{"year 9999", makeJWT(t, `{"exp":253402300799}`, false), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	} {
		got, err := RefreshTokenExpiry(tc.jwt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !got.Equal(tc.want) {
			t.Fatalf("%s: expiry = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, jwt, say string }{
		{"empty", "", "not a JWT"},
		{"two parts", "a.b", "not a JWT"},
		{"four parts", "a.b.c.d", "not a JWT"},
		{"bad base64", "a.!!!.c", "base64"},
		{"bad padding", "a.eyJhb=.c", "base64"},
		{"not an object", makeJWT(t, `[1]`, false), "JSON object"},
		{"null", makeJWT(t, `null`, false), "JSON object"},
		{"no exp", makeJWT(t, `{"iat":1}`, false), "no exp"},
		{"string exp", makeJWT(t, `{"exp":"1700000000"}`, false), "not a number"},
		{"null exp", makeJWT(t, `{"exp":null}`, false), "not a number"},
		{"zero exp", makeJWT(t, `{"exp":0}`, false), "out of range"},
		{"negative exp", makeJWT(t, `{"exp":-5}`, false), "out of range"},
		{"year 10000", makeJWT(t, `{"exp":253402300800}`, false), "out of range"},
		{"huge exp", makeJWT(t, `{"exp":1e400}`, false), "out of range"},
	} {
		_, err := RefreshTokenExpiry(tc.jwt)
		if err == nil {
			t.Fatalf("%s: want an error", tc.name)
		}
		if got, want := kindOf(t, err), provider.KindUnknown; got != want {
			t.Fatalf("%s: kind = %v, want %v", tc.name, got, want)
		}
		if !strings.Contains(err.Error(), tc.say) {
			t.Fatalf("%s: error %q does not say %q", tc.name, err, tc.say)
		}
	}
}

func FuzzRefreshTokenExpiry(f *testing.F) {
	f.Add(seedRefresh, int64(seedRefreshExp), "sub", false)
	f.Add(seedAccess, int64(1), "", true)
	f.Add("a.b.c", int64(0), "x", false)
	f.Add("", int64(-1), "", false)
	f.Add("e30.e30.e30", int64(maxUnix), "\xff", true)
	f.Add("a.eyJleHAiOjF9.c", int64(maxUnix+1), `"}`, false)
	f.Add("a.eyJleHAiOiIxIn0=.c", int64(1<<62), "", true)
	f.Fuzz(func(t *testing.T, raw string, exp int64, sub string, pad bool) {
		if got, err := RefreshTokenExpiry(raw); err == nil {
			if got.Unix() <= 0 || got.Unix() > maxUnix || got.Location() != time.UTC {
				t.Fatalf("RefreshTokenExpiry(%q) = %v, outside 1970..9999 UTC", raw, got)
			}
		} else if strings.Contains(err.Error(), raw) && len(raw) >= 8 {
			t.Fatalf("error %q quotes the token", err)
		}
		claims, _ := json.Marshal(map[string]any{"sub": sub, "exp": exp})
		jwt := makeJWT(t, string(claims), pad)
		got, err := RefreshTokenExpiry(jwt)
		if exp <= 0 || exp > maxUnix {
			if err == nil {
				t.Fatalf("exp %d: want an error, got %v", exp, got)
			}
			return
		}
		if err != nil {
			t.Fatalf("exp %d: %v", exp, err)
		}
		if got, want := got, time.Unix(exp, 0).UTC(); !got.Equal(want) {
			t.Fatalf("exp %d: expiry = %v, want %v", exp, got, want)
		}
	})
}

func FuzzTokenAnswer(f *testing.F) {
	f.Add([]byte(`{"access_token":"` + seedAccess + `","refresh_token":"` + seedRefresh + `","expires_in":3600,"token_type":"Bearer"}`))
	f.Add([]byte(`{"access_token": "NEW TOKEN", "expires_in": "3600" }`))
	f.Add([]byte(`{"error":"invalid_grant","error_description":"heimdall.validation.user.does.not.exist"}`))
	f.Add([]byte(`{"access_token":"","refresh_token":"x"}`))
	f.Add([]byte(`{"access_token":"x","expires_in":-1}`))
	f.Add([]byte(`{"access_token":"x","expires_in":"1e400"}`))
	f.Add([]byte(`{"access_token":"x","expires_in":9223372036854775807}`))
	f.Add([]byte(`{"access_token":"x","refresh_token":"a.eyJleHAiOjF9.c"}`))
	f.Add([]byte(`<html>502 Bad Gateway</html>`))
	f.Add([]byte(`{"access_token":"x`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := &provider.Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
		tok, err := parseTokenAnswer("refresh", resp, fixedNow, canaryRefresh)
		if err != nil {
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Provider != Name {
				t.Fatalf("error %v (%T) is not an everreal *provider.Error", err, err)
			}
			if strings.Contains(err.Error(), canaryRefresh) {
				t.Fatalf("error %q leaks the refresh token", err)
			}
			return
		}
		if tok.Access.IsZero() {
			t.Fatalf("token with an empty access token from %q", body)
		}
		if tok.Refresh.IsZero() {
			t.Fatalf("token lost the refresh token, from %q", body)
		}
		if !tok.AccessExpiresAt.After(fixedNow) || tok.AccessExpiresAt.After(fixedNow.Add(367*24*time.Hour)) {
			t.Fatalf("access expires at %v, not within a year of %v", tok.AccessExpiresAt, fixedNow)
		}
	})
}
