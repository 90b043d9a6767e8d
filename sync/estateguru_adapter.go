package sync

import (
	"context"

	"github.com/syncerhq/syncer/store"
	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/provider"
)

// EstateGuru adapts an EstateGuru client to Provider: its data is the
// investor's portfolio (userInvestments).
type EstateGuru struct{ Client *estateguru.Client }

var _ Provider = EstateGuru{}

// Refresh implements Provider.
func (p EstateGuru) Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error) {
	return p.Client.Refresh(ctx, refresh)
}

// Fetch implements Provider. The answer is decoded as it is saved.
func (p EstateGuru) Fetch(ctx context.Context, access provider.Secret) (Snapshot, error) {
	a, err := p.Client.FetchInvestments(ctx, access)
	if err != nil {
		return nil, err
	}
	return estateGuruAnswer{a}, nil
}

// estateGuruAnswer is a userInvestments answer, not yet decoded.
type estateGuruAnswer struct{ answer *estateguru.Answer }

// Size implements sizedSnapshot.
func (a estateGuruAnswer) Size() int { return len(a.answer.Raw()) }

// Save decodes the answer and stores it. An answer may turn out to be an
// error answer only now, as it is decoded: that error is returned and
// nothing is stored.
func (a estateGuruAnswer) Save(ctx context.Context, to SaveTo) error {
	p, err := a.answer.Decode()
	if err != nil {
		return err
	}
	return to.Store.SaveEstateGuru(ctx, to.ConnID, to.Period, to.FetchedAt, store.EstateGuruSnapshot{
		Currency: p.Currency, CashCents: p.CashCents, Raw: to.CleanRaw(p.Raw),
		Investments: func(yield func(store.Investment, error) bool) {
			// The same fields, one by one: no second copy of a large
			// portfolio.
			for _, inv := range p.Investments {
				if !yield(store.Investment(inv), nil) {
					return
				}
			}
		},
	})
}
