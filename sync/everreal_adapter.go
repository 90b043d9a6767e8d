package sync

import (
	"context"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// EverReal adapts an EverReal client to Provider: its data is the signed-in
// user (users/me).
type EverReal struct{ Client *everreal.Client }

var _ Provider = EverReal{}

// Refresh implements Provider.
func (p EverReal) Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error) {
	return p.Client.Refresh(ctx, refresh)
}

// Fetch implements Provider.
func (p EverReal) Fetch(ctx context.Context, access provider.Secret) (Snapshot, error) {
	u, err := p.Client.Me(ctx, access)
	if err != nil {
		return nil, err
	}
	return everRealSnapshot(u), nil
}

// everRealUser is a users/me answer, as it is stored.
type everRealUser store.EverRealSnapshot

// Size implements sizedSnapshot.
func (u everRealUser) Size() int { return len(u.Raw) }

func (u everRealUser) Save(ctx context.Context, to SaveTo) error {
	u.Raw = to.CleanRaw(u.Raw)
	return to.Store.SaveEverReal(ctx, to.ConnID, to.Period, to.FetchedAt, store.EverRealSnapshot(u))
}

func everRealSnapshot(u *everreal.User) everRealUser {
	snap := everRealUser{
		UserID: u.ID, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName,
		IsActive: u.IsActive, IsTenant: u.IsTenant, TermsAccepted: u.TermsAccepted,
		Language: u.Language, CompanyID: u.CompanyID, CompanyName: u.CompanyName,
		PartnerID: u.PartnerID, PartnerName: u.PartnerName, PartnerSubdomain: u.PartnerSubdomain,
		Scopes: u.Scopes, Raw: u.Raw,
	}
	for _, c := range u.Companies {
		snap.Companies = append(snap.Companies, store.Company{ID: c.ID, Name: c.Name, IsDefault: c.IsDefault})
	}
	return snap
}
