package sandbox

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

var (
	loanCountries = []struct{ code, name string }{
		{"EE", "Estonia"}, {"LV", "Latvia"}, {"LT", "Lithuania"}, {"FI", "Finland"},
		{"ES", "Spain"}, {"DE", "Germany"}, {"PT", "Portugal"},
	}
	loanKinds = []string{
		"Bridge loan", "Development loan", "Business loan", "Refinancing loan",
		"Bridge loan - stage 2", "Development loan - 3.stage",
	}
	firstNames = []string{"Mari", "Jaan", "Anna", "Jüri", "Liis", "Mart", "Katrin", "Tõnu", "Eva", "Peeter"}
	lastNames  = []string{"Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Ilves", "Pärn", "Koppel"}
)

// GenerateInvestor returns a deterministic investor (the same name, n and
// seed give the same investor) with n investments whose amounts vary over
// many magnitudes. The first investments always include the exact amounts
// "0.29" and "1000000.01", and the third has a name with quotes and
// non-ASCII characters. Investment amounts, principal left, market values,
// realized income, profit and change are consistent with each other (change
// is market value minus principal left, never positive; profit is realized
// income plus change). Loan ids are unique.
func GenerateInvestor(name string, n int, seed int64) Investor {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	inv := Investor{
		Name:        name,
		Currency:    "EUR",
		Cash:        formatCents(rng.Int64N(100_000_000_00)),
		Investments: make([]Investment, max(0, n)),
	}
	for i := range inv.Investments {
		c := loanCountries[rng.IntN(len(loanCountries))]
		kind := loanKinds[rng.IntN(len(loanKinds))]
		var amount int64
		switch {
		case i == 0:
			amount = 29 // 0.29
		case i == 1:
			amount = 1_000_000_01 // 1000000.01
		default:
			switch m := rng.IntN(10); {
			case m == 0:
				amount = 1 + rng.Int64N(99)
			case m <= 6:
				amount = 50_00 + rng.Int64N(10_000_00)
			case m <= 8:
				amount = 1 + rng.Int64N(100_000_00)
			default:
				amount = 1 + rng.Int64N(1_000_000_00)
			}
		}
		principal := amount
		if rng.IntN(10) < 3 {
			principal -= rng.Int64N(amount + 1)
		}
		market := principal
		if rng.IntN(20) == 0 {
			market -= rng.Int64N(principal/4 + 1)
		}
		change := market - principal
		realized := rng.Int64N(amount/5 + 1)
		loanName := "#" + strconv.Itoa(1000+i) + " " + kind + " (" + c.name + ")"
		if i == 2 {
			loanName = `#` + strconv.Itoa(1000+i) + ` Development loan "Ülemiste City" – stage 2 (Estonia)`
		}
		inv.Investments[i] = Investment{
			Name:             loanName,
			Quantity:         strconv.FormatInt(1+rng.Int64N(20), 10),
			InvestmentAmount: formatCents(amount),
			MarketValue:      formatCents(market),
			PrincipalLeft:    formatCents(principal),
			Profit:           formatCents(realized + change),
			RealizedIncome:   formatCents(realized),
			Change:           formatCents(change),
			LoanID:           c.code + strconv.Itoa(10000+i),
		}
	}
	return inv
}

// GenerateEverRealUser returns a deterministic EverReal user with the given
// email and password "sandbox-password", one to three companies and the
// default scopes.
func GenerateEverRealUser(email string, seed int64) EverRealUser {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x2545f4914f6cdd1d))
	id := func() string {
		u, _ := uuid.NewRandomFromReader(rngReader{rng}) // never fails: rngReader never does
		return u.String()
	}
	u := EverRealUser{
		Email:            email,
		Password:         "sandbox-password",
		FirstName:        firstNames[rng.IntN(len(firstNames))],
		LastName:         lastNames[rng.IntN(len(lastNames))],
		Language:         []string{"en-US", "de-DE"}[rng.IntN(2)],
		ID:               id(),
		PartnerID:        id(),
		PartnerName:      "sandbox-partner",
		PartnerSubdomain: "sandbox",
		Scopes:           append([]string(nil), DefaultEverRealScopes...),
	}
	for i := range 1 + rng.IntN(3) {
		u.Companies = append(u.Companies, Company{
			ID:        id(),
			Name:      "company-" + strings.ToLower(u.LastName) + "-" + strconv.Itoa(i+1),
			IsDefault: i == 0,
		})
	}
	u.CompanyID, u.CompanyName = u.Companies[0].ID, u.Companies[0].Name
	return u
}

// formatCents writes minor units as a decimal string with two decimals.
func formatCents(c int64) string {
	neg := c < 0
	if neg {
		c = -c
	}
	frac := c % 100
	s := strconv.FormatInt(c/100, 10) + "." + string(rune('0'+frac/10)) + string(rune('0'+frac%10))
	if neg {
		return "-" + s
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// rngReader reads a deterministic generator's bytes, one per number.
type rngReader struct{ rng *rand.Rand }

func (r rngReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(r.rng.Uint32())
	}
	return len(b), nil
}
