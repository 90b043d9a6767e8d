package sync

import (
	"context"
	"time"

	"github.com/syncerhq/syncer/sync/provider"
)

// Provider is what a sync needs of a provider, for one connection's base
// URL: a refresh grant, and the data call. cmd/syncer registers one by
// provider name (Providers); the adapters for EverReal and EstateGuru are
// in this package.
type Provider interface {
	// Refresh trades a refresh token for new tokens. Errors are
	// *provider.Error: their Kind says whether to retry, re-connect or
	// give up.
	Refresh(ctx context.Context, refresh provider.Secret) (provider.Token, error)
	// Fetch pulls the connection's data with the access token. An error of
	// Kind KindInvalidToken gets one refresh and one retry.
	Fetch(ctx context.Context, access provider.Secret) (Snapshot, error)
}

// Snapshot is what a provider answered, ready to be stored: it saves itself
// as the connection's snapshot of a period. Saving may still find the
// answer to be an error answer (as decoding does), with the same error
// Kinds as Fetch.
type Snapshot interface {
	Save(ctx context.Context, to SaveTo) error
}

// sizedSnapshot is a Snapshot that knows the size of its answer in bytes:
// its share of the budget of answers waiting to be stored (slots.go).
type sizedSnapshot interface {
	Size() int
}

// SaveTo is where a Snapshot saves itself, and how.
type SaveTo struct {
	Store  Store
	ConnID int64
	// Period is the start of the snapshot period; FetchedAt when the
	// answer was asked for.
	Period, FetchedAt time.Time
	// CleanRaw returns the raw answer as it may be stored: without the
	// connection's secrets.
	CleanRaw func(raw []byte) []byte
}

// Providers makes a Provider for a connection's base URL, by provider name
// (store.Connection.Provider).
type Providers map[string]func(baseURL string) Provider
