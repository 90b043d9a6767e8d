// Package provider holds what the provider clients and the sync loop share:
// secrets that never print, tokens, the kinds of error a provider can answer
// with, and the one HTTP call policy (deadlines, size caps, retries, rate
// limits) that both providers go through.
//
// It imports nothing of syncer's but the leaf package secret, so the
// provider packages, the sync loop and the command can all use it without a
// cycle.
package provider

import "github.com/syncerhq/syncer/secret"

// Redacted is what a Secret prints as, in every format.
const Redacted = secret.Redacted

// Secret is a token, password or client secret that never prints (see
// package secret).
type Secret = secret.Secret

// Token is what a grant returns (see package secret).
type Token = secret.Token
