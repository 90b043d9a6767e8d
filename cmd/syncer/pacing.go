package main

import (
	"strings"

	"github.com/syncerhq/syncer/sync/estateguru"
	"github.com/syncerhq/syncer/sync/everreal"
	"github.com/syncerhq/syncer/sync/provider"
)

// pacer returns the adaptive pacer for one provider host (SYNCER_PACING),
// or nil when pacing is off. EverReal says its budget in every answer's
// X-RateLimit-* headers; EstateGuru documents no limit, so its rate is
// found by additive increase and multiplicative decrease, logged at INFO
// when it changes. SYNCER_RATE_LIMIT, when set, stays the ceiling.
func (a *app) pacer(providerName, host string) provider.Pacer {
	if strings.EqualFold(a.cfg.Pacing, "off") {
		return nil
	}
	switch providerName {
	case everreal.Name:
		return provider.NewHeaderPacer()
	case estateguru.Name:
		return provider.NewAIMDPacer(a.cfg.RateLimit, func(c provider.RateChange) {
			a.log.Info("request rate changed", "provider", providerName, "host", host,
				"from", round2(c.From), "to", round2(c.To), "reason", c.Reason, "status", c.Status)
		})
	}
	return nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
