package estateguru

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/syncerhq/syncer/sync/provider"
)

// Portfolio is an investor's cash and investments, as userInvestments
// reports them, with every amount in exact minor units (cents).
type Portfolio struct {
	RequestID   string // the request id we sent (the answer echoes it, prefixed)
	Currency    string
	CashCents   int64
	Investments []Investment
	Raw         json.RawMessage // the whole answer, as received
}

// Investment is one loan the investor holds.
type Investment struct {
	LoanID                string // last non-empty path segment of ResourcePath ("EE11111"); "" if none
	Name                  string
	Quantity              int64
	InvestmentAmountCents int64
	MarketValueCents      int64
	PrincipalLeftCents    int64
	ProfitCents           int64
	RealizedIncomeCents   int64
	ChangeCents           int64
	ResourcePath          string
}

// decodeInvestmentsAnswer turns a 2xx userInvestments answer into a
// Portfolio, or a *provider.Error: classified by its code when the body is an
// error answer, KindBadAnswer when it is anything else undocumented.
func decodeInvestmentsAnswer(resp *provider.Response, reqID string) (*Portfolio, error) {
	p, code, err := decodePortfolio(resp.Body, reqID)
	switch {
	case code != "":
		// An error answer has no business carrying tokens; if it does, they
		// stay out of the message.
		var leaked struct {
			Access  string `json:"access_token"`
			Refresh string `json:"refresh_token"`
		}
		_ = json.Unmarshal(resp.Body, &leaked)
		err := adjust(opInvestments, provider.Classify(Name, opInvestments, resp.Status, resp.Header, resp.Body))
		return nil, scrub(err, leaked.Access, leaked.Refresh)
	case errors.Is(err, errRequestID):
		return nil, mismatch(opInvestments, reqID)
	case err != nil:
		return nil, provider.BadAnswer(Name, opInvestments, resp.Status, resp.Header, resp.Body, err)
	}
	p.Raw = json.RawMessage(resp.Body)
	return p, nil
}

var errRequestID = errors.New("request id mismatch")

// decodePortfolio reads the answer in one pass with a streaming decoder,
// holding one investment's raw values at a time. Keys are matched without
// regard to case, underscores or hyphens (requestId, request_id;
// investment_amount, investmentAmount); unknown keys are skipped. A non-empty
// string "error" member makes it an error answer: its code is returned (and
// any decoding error dropped) for the caller to classify.
//
// The answer must be one JSON object with a cash member; investments may be
// missing or null (none). A requestId, when present, must be reqID or end
// with it (errRequestID otherwise). Amounts that are missing or null are 0.
func decodePortfolio(body []byte, reqID string) (*Portfolio, string, error) {
	// Ordinary answers take the one-pass fast path (portfolio_fast.go); it
	// leaves anything else, errors included, to the careful reading below.
	if p, ok := decodePortfolioFast(body, reqID); ok {
		return p, "", nil
	}
	var code string
	p, err := decodePortfolioBody(body, reqID, &code)
	if code != "" {
		return nil, code, nil
	}
	if err != nil {
		return nil, "", err
	}
	return p, "", nil
}

func decodePortfolioBody(body []byte, reqID string, code *string) (*Portfolio, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := expectDelim(dec, '{', "the answer is not a JSON object"); err != nil {
		return nil, err
	}
	p := &Portfolio{RequestID: reqID}
	haveCash := false
	for dec.More() {
		key, err := nextKey(dec)
		if err != nil {
			return nil, err
		}
		switch normKey(key) {
		case "requestid":
			got, err := decodeString(dec, "requestId")
			if err != nil {
				return nil, err
			}
			if got != "" && !requestIDMatches(got, reqID) {
				return nil, errRequestID
			}
		case "currency":
			cur, err := decodeString(dec, "currency")
			if err != nil {
				return nil, err
			}
			p.Currency = strings.TrimSpace(cur)
		case "cash":
			raw, err := decodeRaw(dec)
			if err != nil {
				return nil, err
			}
			if isNull(raw) {
				haveCash = false
				continue
			}
			cents, err := moneyValue(raw)
			if err != nil {
				return nil, fmt.Errorf("cash: %w", err)
			}
			p.CashCents, haveCash = cents, true
		case "investments":
			list, err := decodeInvestmentList(dec)
			if err != nil {
				return nil, err
			}
			p.Investments = list // a repeated member replaces, as encoding/json does
		case "error":
			raw, err := decodeRaw(dec)
			if err != nil {
				return nil, err
			}
			if c := errorCode(raw); c != "" {
				*code = c
			}
		default:
			if _, err := decodeRaw(dec); err != nil {
				return nil, err
			}
		}
	}
	if err := expectDelim(dec, '}', "the answer is not one JSON object"); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more data follows the JSON object")
	}
	if !haveCash {
		return nil, errors.New("the answer has no cash")
	}
	return p, nil
}

func decodeInvestmentList(dec *json.Decoder) ([]Investment, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, jsonCause(err)
	}
	if t == nil {
		return nil, nil // "investments": null
	}
	if d, ok := t.(json.Delim); !ok || d != '[' {
		return nil, errors.New("investments is not a list")
	}
	var list []Investment
	for i := 1; dec.More(); i++ {
		inv, err := decodeInvestment(dec, i)
		if err != nil {
			return nil, err
		}
		list = append(list, inv)
	}
	if err := expectDelim(dec, ']', "investments is not a list"); err != nil {
		return nil, err
	}
	return list, nil
}

// rawValue is one member of an investment, with the key it came under (for
// error messages: the key as the provider spelled it).
type rawValue struct {
	key string
	raw json.RawMessage
}

// decodeInvestment reads the i-th (1-based) investment object.
func decodeInvestment(dec *json.Decoder, i int) (Investment, error) {
	var inv Investment
	if err := expectDelim(dec, '{', fmt.Sprintf("investment %d is not a JSON object", i)); err != nil {
		return inv, err
	}
	var f investmentFields
	for dec.More() {
		key, err := nextKey(dec)
		if err != nil {
			return inv, err
		}
		raw, err := decodeRaw(dec)
		if err != nil {
			return inv, err
		}
		if dst := f.member(normKey(key)); dst != nil {
			*dst = rawValue{key: key, raw: raw}
		}
	}
	if err := expectDelim(dec, '}', fmt.Sprintf("investment %d is not a JSON object", i)); err != nil {
		return inv, err
	}
	return investmentFrom(i, &f)
}

// investmentFields are the members of one investment object that matter,
// the last of each kind (as encoding/json keeps the last of repeated keys).
type investmentFields struct {
	name, quantity, resourcePath                        rawValue
	amount, market, principal, profit, realized, change rawValue
}

// member is where the value of the member with this normalized key (see
// normKey) goes; nil for a member that does not matter. Both decoders use it.
func (f *investmentFields) member(norm string) *rawValue {
	switch norm {
	case "name":
		return &f.name
	case "quantity":
		return &f.quantity
	case "resourcepath":
		return &f.resourcePath
	case "investmentamount":
		return &f.amount
	case "marketvalue":
		return &f.market
	case "principalleft":
		return &f.principal
	case "profit":
		return &f.profit
	case "realizedincome":
		return &f.realized
	case "change":
		return &f.change
	}
	return nil
}

// investmentFrom makes the i-th (1-based) investment of its members, parsing
// every amount exactly.
func investmentFrom(i int, f *investmentFields) (Investment, error) {
	var inv Investment
	// Name and path first: they say which investment a bad value is in.
	var err error
	if inv.Name, err = stringValue(f.name.raw); err != nil {
		return inv, fmt.Errorf("investment %d: %s: %w", i, cleanText(f.name.key, 40), err)
	}
	if inv.ResourcePath, err = stringValue(f.resourcePath.raw); err != nil {
		return inv, fmt.Errorf("investment %d: %s: %w", i, cleanText(f.resourcePath.key, 40), err)
	}
	inv.ResourcePath = strings.TrimSpace(inv.ResourcePath)
	inv.LoanID = loanID(inv.ResourcePath)
	where := func(key string, err error) error {
		return fmt.Errorf("investment %d (%s): %s: %w", i, describeInvestment(inv), cleanText(key, 40), err)
	}
	if q, ok := plainWhole(f.quantity.raw); ok {
		inv.Quantity = q
	} else if len(f.quantity.raw) > 0 && !isNull(f.quantity.raw) {
		s, err := numberText(f.quantity.raw)
		if err == nil {
			inv.Quantity, err = parseQuantity(s)
		}
		if err != nil {
			return inv, where(f.quantity.key, err)
		}
	}
	for _, f := range [...]struct {
		v   *rawValue
		out *int64
	}{
		{&f.amount, &inv.InvestmentAmountCents},
		{&f.market, &inv.MarketValueCents},
		{&f.principal, &inv.PrincipalLeftCents},
		{&f.profit, &inv.ProfitCents},
		{&f.realized, &inv.RealizedIncomeCents},
		{&f.change, &inv.ChangeCents},
	} {
		if len(f.v.raw) == 0 || isNull(f.v.raw) {
			continue
		}
		cents, err := moneyValue(f.v.raw)
		if err != nil {
			return inv, where(f.v.key, err)
		}
		*f.out = cents
	}
	return inv, nil
}

// describeInvestment names an investment for an error message: its name and
// loan id, as far as they are known.
func describeInvestment(inv Investment) string {
	var parts []string
	if inv.Name != "" {
		parts = append(parts, fmt.Sprintf("%q", cleanText(inv.Name, 60)))
	}
	if inv.LoanID != "" {
		parts = append(parts, "loan "+cleanText(inv.LoanID, 40))
	}
	if len(parts) == 0 {
		return "unnamed"
	}
	return strings.Join(parts, ", ")
}

// loanID returns the last non-empty path segment of a resource path
// ("https://estateguru.co/portal/investment/single/EE11111" -> "EE11111"),
// or "" when it has none.
func loanID(resourcePath string) string {
	if id, ok := plainLoanID(resourcePath); ok {
		return id
	}
	return parsedLoanID(resourcePath)
}

// parsedLoanID is loanID the long way, through url.Parse.
func parsedLoanID(resourcePath string) string {
	p := resourcePath
	if u, err := url.Parse(resourcePath); err == nil {
		p = u.Path
	} else {
		// Not a URL (a stray space or percent sign): cut query and fragment
		// by hand.
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
	}
	segs := strings.Split(p, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(segs[i]); s != "" {
			return s
		}
	}
	return ""
}

// moneyValue parses an amount that is a JSON string ("48872900.14") or a JSON
// number (48872900.14), exactly, from its literal text.
func moneyValue(raw json.RawMessage) (int64, error) {
	if cents, ok := plainCents(raw); ok {
		return cents, nil
	}
	s, err := numberText(raw)
	if err != nil {
		return 0, err
	}
	return ParseCents(s)
}

// numberText returns the text of a JSON string or the literal of a JSON
// number, never going through float64.
func numberText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("no value")
	}
	switch c := raw[0]; {
	case c == '"':
		if s, ok := plainString(raw); ok {
			return s, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errors.New("undecodable JSON string")
		}
		return s, nil
	case c == '-' || ('0' <= c && c <= '9'):
		return string(raw), nil
	default:
		return "", fmt.Errorf("is a JSON %s, expected a number or a numeric string", jsonKind(c))
	}
}

func stringValue(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || isNull(raw) {
		return "", nil
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("is a JSON %s, expected a string", jsonKind(raw[0]))
	}
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("undecodable JSON string")
	}
	return s, nil
}

// plainString returns the value of a JSON string literal that holds no
// escapes, no control characters and only valid UTF-8: its bytes between the
// quotes, exactly what json.Unmarshal would give, without its cost. ok is
// false for anything else (json.Unmarshal decides those).
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	ascii := true
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '"':
		return "string"
	}
	return "number"
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// normKey folds a key's case and drops underscores and hyphens, so
// request_id, requestId and RequestID are one key.
func normKey(k string) string {
	var b strings.Builder
	b.Grow(len(k))
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_' || c == '-':
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func decodeString(dec *json.Decoder, what string) (string, error) {
	raw, err := decodeRaw(dec)
	if err != nil {
		return "", err
	}
	s, err := stringValue(raw)
	if err != nil {
		return "", fmt.Errorf("%s %w", what, err)
	}
	return s, nil
}

func decodeRaw(dec *json.Decoder) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, jsonCause(err)
	}
	return raw, nil
}

func nextKey(dec *json.Decoder) (string, error) {
	t, err := dec.Token()
	if err != nil {
		return "", jsonCause(err)
	}
	key, ok := t.(string)
	if !ok {
		return "", errors.New("broken JSON: expected a member name")
	}
	return key, nil
}

func expectDelim(dec *json.Decoder, want json.Delim, msg string) error {
	t, err := dec.Token()
	if err != nil {
		return jsonCause(err)
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return errors.New(msg)
	}
	return nil
}

// jsonCause keeps a JSON error's position but never a quoted value.
func jsonCause(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("broken JSON at byte %d", se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	}
	return errors.New("undecodable JSON")
}
