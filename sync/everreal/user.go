package everreal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/syncerhq/syncer/sync/provider"
)

// User is the signed-in user as users/me describes them. Strings the
// provider sends as null are "".
type User struct {
	ID, Email           string
	FirstName, LastName string
	IsActive, IsTenant  bool
	TermsAccepted       bool   // areTermsAccepted
	Language            string // profileData.language

	CompanyID, CompanyName                   string // currentCompany
	PartnerID, PartnerName, PartnerSubdomain string // currentCompany.partner

	Companies []Company
	Scopes    []string        // tokenInfo.scope
	Raw       json.RawMessage // the whole answer as received, for the snapshot's raw column
}

// Company is one of the companies the user belongs to.
type Company struct {
	ID, Name  string
	IsDefault bool
}

// Me fetches the signed-in user's profile. A refused access token comes back
// as KindInvalidToken: refresh once and try again.
func (c *Client) Me(ctx context.Context, access provider.Secret) (*User, error) {
	const op = "users/me"
	if access.IsZero() {
		return nil, localError(op, provider.KindInvalidToken, "no access token")
	}
	if !headerSafe(access.Reveal()) {
		return nil, localError(op, provider.KindInvalidToken, "the access token has control characters")
	}
	u, err := c.endpoint(op, "accounts", "api", "users", "me")
	if err != nil {
		return nil, err
	}
	target := u.String()
	resp, err := c.http().Do(ctx, provider.Request{
		Provider: Name,
		Op:       op,
		MaxBody:  provider.MaxDataBody,
		New: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+access.Reveal())
			// Documented for this GET, odd as it is.
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			return req, nil
		},
	})
	if err != nil {
		return nil, scrub(err, access.Reveal())
	}
	user, err := parseUser(resp)
	if err != nil {
		return nil, scrub(err, access.Reveal())
	}
	return user, nil
}

type userAnswer struct {
	ID               string `json:"id"`
	Email            string `json:"email"`
	FirstName        string `json:"firstName"`
	LastName         string `json:"lastName"`
	IsActive         bool   `json:"isActive"`
	IsTenant         bool   `json:"isTenant"`
	AreTermsAccepted bool   `json:"areTermsAccepted"`
	ProfileData      struct {
		Language string `json:"language"`
	} `json:"profileData"`
	Companies []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		IsDefault bool   `json:"isDefault"`
	} `json:"companies"`
	CurrentCompany struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Partner struct {
			ID        string `json:"id"`
			Name      string `json:"name"`
			Subdomain string `json:"subdomain"`
		} `json:"partner"`
	} `json:"currentCompany"`
	TokenInfo struct {
		Scope scopeList `json:"scope"`
	} `json:"tokenInfo"`
	Error string `json:"error"`
}

func parseUser(resp *provider.Response) (*User, error) {
	const op = "users/me"
	var a userAnswer
	if err := decodeJSON(op, resp, &a); err != nil {
		return nil, err
	}
	if strings.TrimSpace(a.ID) == "" {
		if a.Error != "" {
			return nil, provider.Classify(Name, op, resp.Status, resp.Header, resp.Body)
		}
		return nil, provider.BadAnswer(Name, op, resp.Status, resp.Header, resp.Body,
			errors.New("the user has no id"))
	}
	u := &User{
		ID:               a.ID,
		Email:            a.Email,
		FirstName:        a.FirstName,
		LastName:         a.LastName,
		IsActive:         a.IsActive,
		IsTenant:         a.IsTenant,
		TermsAccepted:    a.AreTermsAccepted,
		Language:         a.ProfileData.Language,
		CompanyID:        a.CurrentCompany.ID,
		CompanyName:      a.CurrentCompany.Name,
		PartnerID:        a.CurrentCompany.Partner.ID,
		PartnerName:      a.CurrentCompany.Partner.Name,
		PartnerSubdomain: a.CurrentCompany.Partner.Subdomain,
		Scopes:           []string(a.TokenInfo.Scope),
		Raw:              json.RawMessage(bytes.Clone(resp.Body)),
	}
	for _, c := range a.Companies {
		u.Companies = append(u.Companies, Company{ID: c.ID, Name: c.Name, IsDefault: c.IsDefault})
	}
	return u, nil
}

// scopeList is tokenInfo.scope: a JSON array as documented, or the
// space-separated string OAuth servers commonly send instead.
type scopeList []string

func (s *scopeList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*s = strings.Fields(str)
		return nil
	}
	var list []*string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	out := make([]string, 0, len(list))
	for _, p := range list {
		if p != nil && *p != "" {
			out = append(out, *p)
		}
	}
	*s = out
	return nil
}
