package estateguru

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// ParseCents parses a decimal amount of money exactly into minor units
// (cents): "48872900.14" -> 4887290014, "10130" -> 1013000, "0.5" -> 50,
// "-12.30" -> -1230, "+1.00" -> 100. Surrounding white space is ignored.
//
// The grammar is strict but sane: an optional sign, one or more digits,
// and optionally a point followed by one or more digits. Leading zeros are
// fine ("007.50"). More than two fraction digits are allowed only when the
// extra ones are zero ("1.2300"): a non-zero digit below a cent is an error,
// never rounded. Refused, with an error quoting the value: empty text, a
// point without digits on both sides (".5", "1."), exponents ("1e2"), digit
// grouping ("1,000.00", "1_000"), anything else that is not a digit, and
// amounts beyond int64 cents.
//
// Errors from ParseCents are plain errors; the client wraps them into a
// *provider.Error naming the field and the investment.
func ParseCents(s string) (int64, error) { return parseCents([]byte(s)) }

// parseCents is ParseCents reading bytes, as Cents.UnmarshalJSON has them.
func parseCents(s []byte) (int64, error) {
	n, err := parseDecimal(s, 2)
	if err != nil {
		return 0, fmt.Errorf("%q is not an amount of money: %w", clipValue(string(s)), err)
	}
	return n, nil
}

// parseQuantity parses a whole number that may be written as a decimal
// with a zero fraction ("3", "3.0"), as a JSON number or string may be.
func parseQuantity(s []byte) (int64, error) {
	n, err := parseDecimal(s, 0)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number: %w", clipValue(string(s)), err)
	}
	return n, nil
}

var (
	errEmpty      = errors.New("it is empty")
	errSyntax     = errors.New("expected digits with an optional sign and decimal point, like 1234.56")
	errExponent   = errors.New("exponents are not accepted")
	errGrouping   = errors.New("digit grouping (1,000 or 1_000) is not accepted")
	errBarePoint  = errors.New("a decimal point needs digits on both sides")
	errOverflow   = errors.New("it is too large")
	errSubUnitMsg = "a non-zero digit below the smallest unit (it would have to be rounded)"
)

// parseDecimal returns s * 10^scale as an int64, exactly, or an error saying
// why it cannot.
func parseDecimal(s []byte, scale int) (int64, error) {
	s = bytes.TrimSpace(s)
	if len(s) == 0 {
		return 0, errEmpty
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	intPart, frac, hasPoint := bytes.Cut(s, []byte("."))
	if hasPoint && (len(intPart) == 0 || len(frac) == 0) {
		if len(intPart) == 0 && len(frac) == 0 {
			return 0, errSyntax
		}
		return 0, errBarePoint
	}
	if len(intPart) == 0 {
		return 0, errSyntax
	}
	for _, part := range [...][]byte{intPart, frac} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			switch {
			case '0' <= c && c <= '9':
			case (c == 'e' || c == 'E') && i > 0 && isExponent(part[i+1:]):
				return 0, errExponent
			case c == ',' || c == '_':
				return 0, errGrouping
			default:
				return 0, errSyntax
			}
		}
	}
	// The magnitude may reach 2^63 for a negative amount (math.MinInt64).
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var v uint64
	push := func(d byte) bool {
		x := uint64(d - '0')
		if v > (limit-x)/10 {
			return false
		}
		v = v*10 + x
		return true
	}
	for i := 0; i < len(intPart); i++ {
		if !push(intPart[i]) {
			return 0, errOverflow
		}
	}
	for i := 0; i < scale; i++ {
		d := byte('0')
		if i < len(frac) {
			d = frac[i]
		}
		if !push(d) {
			return 0, errOverflow
		}
	}
	if len(frac) > scale {
		for i := scale; i < len(frac); i++ {
			if frac[i] != '0' {
				if scale == 0 {
					return 0, errors.New("it has a fraction")
				}
				return 0, errors.New(errSubUnitMsg)
			}
		}
	}
	if neg {
		if v == 1<<63 {
			return math.MinInt64, nil
		}
		return -int64(v), nil
	}
	return int64(v), nil
}

// isExponent reports whether s is what follows the e of an exponent: an
// optional sign and digits.
func isExponent(s []byte) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clipValue keeps a quoted bad value short in an error message.
func clipValue(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	// Cut on a rune boundary.
	cut := max
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
