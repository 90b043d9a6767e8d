package estateguru

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// decodePortfolioFast decodes an ordinary, well-formed userInvestments answer
// in one pass over its bytes. encoding/json's Decoder costs a few
// allocations and an error value per token, which for a portfolio of 100,000
// investments (a million tokens) took seconds; this takes a small fraction.
//
// It is only a fast path: it reports ok=false for anything it does not
// decode exactly as decodePortfolioBody would (an "error" member, a key with
// escapes, a string that is not valid UTF-8, deep nesting, any syntax or
// value error), and the caller then runs decodePortfolioBody, which has the
// last word on what is accepted and on every error message. When it reports
// ok, decodePortfolioBody would have returned the same Portfolio (the
// differential fuzz test in portfolio_fast_test.go holds it to that). The
// values themselves go through the same functions (stringValue, moneyValue,
// investmentFrom) in both paths.
func decodePortfolioFast(body []byte, reqID string) (p *Portfolio, ok bool) {
	return decodePortfolioFastTo(body, reqID, nil)
}

// decodePortfolioFastTo is decodePortfolioFast, handing the investments to
// st as they are decoded when st is not nil (see Stream). What can be handed
// over before the end cannot be taken back, so with st it also declines
// what would change it: a second investments member, or currency or cash
// members after the investments once they were handed over.
func decodePortfolioFastTo(body []byte, reqID string, st *Stream) (p *Portfolio, ok bool) {
	s := fastScanner{b: body, stream: st}
	started := false // with st: the investments member was met
	if !s.expect('{') {
		return nil, false
	}
	p = &Portfolio{RequestID: reqID}
	haveCash := false
	if !s.members(func(key []byte) bool {
		var norm [16]byte
		switch string(normKeyBytes(norm[:0], key)) {
		case "requestid":
			raw, ok := s.value()
			if !ok {
				return false
			}
			got, err := stringValue(raw)
			if err != nil || (got != "" && !requestIDMatches(got, reqID)) {
				return false
			}
		case "currency":
			if st != nil && st.announced {
				return false
			}
			raw, ok := s.value()
			if !ok {
				return false
			}
			cur, err := stringValue(raw)
			if err != nil {
				return false
			}
			p.Currency = strings.TrimSpace(cur)
		case "cash":
			if st != nil && st.announced {
				return false
			}
			raw, ok := s.value()
			if !ok {
				return false
			}
			if isNull(raw) {
				haveCash = false
				return true
			}
			cents, err := moneyValue(raw)
			if err != nil {
				return false
			}
			p.CashCents, haveCash = cents, true
		case "investments":
			if st != nil {
				if started {
					return false
				}
				started = true
				if haveCash {
					st.announce(p.Currency, p.CashCents)
				}
			}
			list, ok := s.investments()
			if !ok {
				return false
			}
			p.Investments = list // a repeated member replaces, as in decodePortfolioBody
		case "error":
			// An error answer, or something shaped like one: the careful
			// path decides.
			return false
		default:
			if _, ok := s.value(); !ok {
				return false
			}
		}
		return true
	}) {
		return nil, false
	}
	s.ws()
	if s.i != len(s.b) || !haveCash {
		return nil, false
	}
	return p, true
}

// investments reads the value of an "investments" member: null (none) or a
// list of objects.
func (s *fastScanner) investments() ([]Investment, bool) {
	s.ws()
	if s.literal("null") {
		return nil, true
	}
	if !s.expect('[') {
		return nil, false
	}
	s.ws()
	if s.peek() == ']' {
		s.i++
		return nil, true // as decodeInvestmentList: an empty list is nil
	}
	// Sized once: growing a list of 100,000 by appending allocates it
	// several times over.
	list := make([]Investment, 0, min(countElements(s.b[s.i:]), len(s.b)/64+1))
	for i := 1; ; i++ {
		var f investmentFields
		if !s.expect('{') {
			return nil, false
		}
		if !s.members(func(key []byte) bool {
			var norm [24]byte
			dst := f.member(string(normKeyBytes(norm[:0], key)))
			raw, ok := s.value()
			if ok && dst != nil {
				// The key is only for error messages, and an error sends
				// the whole answer down the careful path.
				*dst = rawValue{raw: raw}
			}
			return ok
		}) {
			return nil, false
		}
		inv, err := investmentFrom(i, &f)
		if err != nil {
			return nil, false
		}
		list = append(list, inv)
		if s.stream != nil && len(list)%streamBatch == 0 && !s.stream.handOver(list) {
			return nil, false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return list, true
		default:
			return nil, false
		}
	}
}

// normKeyBytes is normKey appending to dst, without an allocation while the
// key fits dst's capacity.
func normKeyBytes(dst, k []byte) []byte {
	if len(k) > cap(dst) {
		return []byte(normKey(string(k)))
	}
	for _, c := range k {
		switch {
		case c == '_' || c == '-':
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// maxFastDepth bounds the nesting the fast path follows in values it skips;
// deeper answers take the careful path (encoding/json has its own limit).
const maxFastDepth = 64

// fastScanner reads JSON text strictly by RFC 8259: whatever it accepts,
// encoding/json accepts too.
type fastScanner struct {
	b     []byte
	i     int
	depth int
	// stream, if set, is handed the investments as they are decoded, once
	// it has announced the portfolio's currency and cash.
	stream *Stream
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *fastScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// expect skips white space and one byte c.
func (s *fastScanner) expect(c byte) bool {
	s.ws()
	if s.peek() != c {
		return false
	}
	s.i++
	return true
}

func (s *fastScanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// members reads an object's members after its '{', through its '}'. For
// each it reads the key and the colon and calls member, which must read the
// value. Keys with escapes or bytes outside ASCII are left to the careful
// path.
func (s *fastScanner) members(member func(key []byte) bool) bool {
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		start := s.i
		plain, ok := s.str()
		if !ok || !plain {
			return false
		}
		key := s.b[start+1 : s.i-1]
		if !s.expect(':') {
			return false
		}
		s.ws()
		if !member(key) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// value reads one JSON value (after optional white space) and returns its
// bytes, as json.RawMessage would hold them.
func (s *fastScanner) value() ([]byte, bool) {
	s.ws()
	start := s.i
	var ok bool
	switch c := s.peek(); {
	case c == '"':
		var plain bool
		plain, ok = s.str()
		if ok && !plain && !utf8.Valid(s.b[start:s.i]) {
			// encoding/json replaces invalid UTF-8; the careful path does
			// that.
			ok = false
		}
	case c == '-' || ('0' <= c && c <= '9'):
		ok = s.number()
	case c == '{':
		s.i++
		if s.depth++; s.depth > maxFastDepth {
			return nil, false
		}
		ok = s.members(func([]byte) bool { _, ok := s.value(); return ok })
		s.depth--
	case c == '[':
		s.i++
		if s.depth++; s.depth > maxFastDepth {
			return nil, false
		}
		ok = s.elements()
		s.depth--
	case c == 't':
		ok = s.literal("true")
	case c == 'f':
		ok = s.literal("false")
	case c == 'n':
		ok = s.literal("null")
	}
	if !ok {
		return nil, false
	}
	return s.b[start:s.i], true
}

// elements reads an array's elements after its '[', through its ']'.
func (s *fastScanner) elements() bool {
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if _, ok := s.value(); !ok {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// str reads a string, quotes included. plain reports that it holds neither
// escapes nor bytes outside ASCII, so its bytes are its value.
func (s *fastScanner) str() (plain, ok bool) {
	if s.peek() != '"' {
		return false, false
	}
	s.i++
	plain = true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return plain, true
		case c < 0x20:
			return false, false
		case c == '\\':
			plain = false
			if s.i+1 >= len(s.b) {
				return false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false, false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return false, false
					}
				}
				s.i += 6
			default:
				return false, false
			}
		default:
			if c >= utf8.RuneSelf {
				plain = false
			}
			s.i++
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *fastScanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more digits.
func (s *fastScanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// plainLoanID is loanID for the plain absolute URLs EstateGuru sends
// ("https://estateguru.co/portal/investment/single/EE11111"), without
// url.Parse's allocations: an http or https URL of printable ASCII without
// %, ? or #, whose path (from the first slash after the authority, where
// url.Parse puts it) has a non-empty segment. The id is a substring of s.
// ok is false for anything else, which loanID then reads the long way; for
// these, it finds the same segment whether or not url.Parse would accept
// the authority.
func plainLoanID(s string) (string, bool) {
	var rest string
	switch {
	case strings.HasPrefix(s, "https://"):
		rest = s[len("https://"):]
	case strings.HasPrefix(s, "http://"):
		rest = s[len("http://"):]
	default:
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#' {
			return "", false
		}
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return "", false
	}
	path := rest[slash:]
	end := len(path)
	for end > 0 && path[end-1] == '/' {
		end--
	}
	if end == 0 {
		return "", false
	}
	return path[strings.LastIndexByte(path[:end], '/')+1 : end], true
}

// plainCents is ParseCents for the usual shape of an amount, a JSON string
// or number of the form -?[0-9]{1,15}(\.[0-9]{1,2})?, read from the bytes
// without allocating. ok is false for anything else (ParseCents decides).
func plainCents(raw []byte) (int64, bool) {
	b := unquotedNumber(raw)
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var v int64
	n := 0
	for n < len(b) && '0' <= b[n] && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	if n == 0 || n > 15 {
		return 0, false
	}
	cents := 0
	switch frac := b[n:]; {
	case len(frac) == 0:
	case len(frac) >= 2 && len(frac) <= 3 && frac[0] == '.' && isDigits(frac[1:]):
		cents = int(frac[1]-'0') * 10
		if len(frac) == 3 {
			cents += int(frac[2] - '0')
		}
	default:
		return 0, false
	}
	v = v*100 + int64(cents)
	if neg {
		v = -v
	}
	return v, true
}

// plainWhole is parseQuantity for a JSON string or number of one to 15
// digits, read from the bytes without allocating.
func plainWhole(raw []byte) (int64, bool) {
	b := unquotedNumber(raw)
	if len(b) == 0 || len(b) > 15 || !isDigits(b) {
		return 0, false
	}
	var v int64
	for _, c := range b {
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// unquotedNumber returns a JSON number's bytes, or the bytes between the
// quotes of a JSON string; the callers accept only digits, '-' and '.' in
// them, which a JSON string holds only as themselves.
func unquotedNumber(raw []byte) []byte {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		return raw[1 : len(raw)-1]
	}
	return raw
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// countElements counts the elements of the array whose '[' was just read,
// looking only at strings, brackets, braces and commas (the reading that
// follows checks everything else). 0 when the array does not end.
func countElements(b []byte) int {
	depth, commas, empty := 0, 0, true
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			// Jump to the closing quote: one not escaped by an odd run of
			// backslashes.
			for {
				j := bytes.IndexByte(b[i+1:], '"')
				if j < 0 {
					return 0
				}
				i += j + 1
				k := i - 1
				for k >= 0 && b[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				if empty {
					return 0
				}
				return commas + 1
			}
			depth--
		case ',':
			if depth == 0 {
				commas++
			}
		}
		empty = false
	}
	return 0
}
