package store

import (
	"context"
	"errors"
	"testing"

	"github.com/syncerhq/syncer/secret"
)

// A rotated refresh token reaches tokens.db even when snapshots.db cannot
// be read or written: the vault never depends on the reporting file.
func TestSaveTokenIsDurableWithoutSnapshotsDB(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Connect(ctx, "eg", "estateguru", "https://eg.example", secret.Token{Refresh: "refresh-1"})
	if err != nil {
		t.Fatal(err)
	}
	s.snapshots.Close() // the reporting file is gone from under us
	err = s.SaveToken(ctx, c.ID, secret.Token{Refresh: "refresh-2", Access: "access-2"})
	if !errors.Is(err, ErrExpiryNotMirrored) {
		t.Fatalf("SaveToken = %v, want ErrExpiryNotMirrored (the vault write done)", err)
	}
	got, err := s.Token(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := got.Token.Refresh.Reveal(); r != "refresh-2" {
		t.Fatalf("stored refresh token = %q, want refresh-2", r)
	}
}
