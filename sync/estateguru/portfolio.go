package estateguru

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
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
	return decodeAnswer(resp, reqID, nil)
}

// decodeAnswer is decodeInvestmentsAnswer, handing each investment to each
// as it is read if each is set (the Portfolio then has no Investments).
func decodeAnswer(resp *provider.Response, reqID string, each func(Investment) error) (*Portfolio, error) {
	p, code, err := decodePortfolioEach(resp.Body, reqID, each)
	if _, ok := errors.AsType[callerError](err); ok {
		return nil, err // Stream's caller stopped it: its error, untouched
	}
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

// Answer is a userInvestments answer as received (a success status, the
// body read whole), not yet decoded: FetchInvestments returns it, and
// Decode turns it into a Portfolio or the error Investments would return.
type Answer struct {
	resp   *provider.Response
	reqID  string
	access provider.Secret // scrubbed from every error
}

// NewAnswer is an answer with this body, as if received for the request id
// reqID: what a fake client returns from FetchInvestments.
func NewAnswer(body []byte, reqID string) *Answer {
	return &Answer{resp: &provider.Response{Status: 200, Body: body}, reqID: reqID}
}

// Raw is the whole answer, as received.
func (a *Answer) Raw() []byte { return a.resp.Body }

// Decode decodes the whole answer: the Portfolio, or the error Investments
// would return for it.
func (a *Answer) Decode() (*Portfolio, error) {
	return a.Stream(nil)
}

// Stream decodes the answer as Decode does, but hands each investment to
// each as it is read instead of keeping them in the Portfolio: a caller can
// store the first while the last are still being read. An error from each
// ends the decoding and is returned as it is. Investments handed over
// before an error are not a portfolio: an answer may turn out to be an
// error answer, or broken, only at its end.
func (a *Answer) Stream(each func(Investment) error) (*Portfolio, error) {
	p, err := decodeAnswer(a.resp, a.reqID, each)
	if err != nil {
		if ce, ok := errors.AsType[callerError](err); ok {
			return nil, ce.err
		}
		return nil, scrub(err, a.access.Reveal())
	}
	return p, nil
}

// callerError carries an error of Stream's each through the decoder.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }

var errRequestID = errors.New("request id mismatch")

// decodePortfolio reads the answer in one pass with a streaming decoder
// (jsontext), holding one investment at a time. Keys are matched without
// regard to case, underscores or hyphens (requestId, request_id;
// investment_amount, investmentAmount); unknown keys are skipped. A non-empty
// string "error" member makes it an error answer: its code is returned (and
// any later decoding error dropped) for the caller to classify.
//
// The answer must be one JSON object with a cash member; investments may be
// missing or null (none). A requestId, when present, must be reqID or end
// with it (errRequestID otherwise). Amounts that are missing or null are 0.
func decodePortfolio(body []byte, reqID string) (*Portfolio, string, error) {
	return decodePortfolioEach(body, reqID, nil)
}

func decodePortfolioEach(body []byte, reqID string, each func(Investment) error) (*Portfolio, string, error) {
	r := portfolioReader{dec: jsontext.NewDecoder(bytes.NewBuffer(body),
		jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)), each: each}
	p, err := r.portfolio(reqID)
	if _, ok := errors.AsType[callerError](err); ok {
		return nil, "", err
	}
	if r.code != "" {
		return nil, r.code, nil
	}
	if err != nil {
		return nil, "", err
	}
	if !onlySpace(r.dec.UnreadBuffer()) {
		return nil, "", errors.New("more data follows the JSON object")
	}
	return p, "", nil
}

type portfolioReader struct {
	dec  *jsontext.Decoder
	code string // the error answer's code, once met
	norm []byte // scratch for normalized keys
	// each, if set, takes the investments as they are read (Stream).
	each     func(Investment) error
	haveList bool // an investments member was read
}

func (r *portfolioReader) portfolio(reqID string) (*Portfolio, error) {
	if err := r.open('{', msg("the answer is not a JSON object")); err != nil {
		return nil, err
	}
	p := &Portfolio{RequestID: reqID}
	haveCash := false
	for r.dec.PeekKind() != '}' {
		_, norm, err := r.name()
		if err != nil {
			return nil, err
		}
		if string(norm) == "investments" {
			// Other members repeated, the last wins, as in encoding/json;
			// a second list of investments is refused: the first may be
			// stored already, as it was read (Stream).
			if r.haveList {
				return nil, errors.New("the answer holds two lists of investments")
			}
			r.haveList = true
			list, err := r.investments()
			if err != nil {
				return nil, err
			}
			p.Investments = list // a repeated member replaces, as encoding/json does
			continue
		}
		raw, err := r.value()
		if err != nil {
			return nil, err
		}
		switch string(norm) {
		case "requestid":
			var got Text
			if err := got.UnmarshalJSON(raw); err != nil {
				return nil, fmt.Errorf("requestId %w", err)
			}
			if got != "" && !requestIDMatches(string(got), reqID) {
				return nil, errRequestID
			}
		case "currency":
			var cur Text
			if err := cur.UnmarshalJSON(raw); err != nil {
				return nil, fmt.Errorf("currency %w", err)
			}
			p.Currency = strings.TrimSpace(string(cur))
		case "cash":
			if isNull(raw) {
				haveCash = false
				continue
			}
			var cash Cents
			if err := cash.UnmarshalJSON(raw); err != nil {
				return nil, fmt.Errorf("cash: %w", err)
			}
			p.CashCents, haveCash = int64(cash), true
		case "error":
			if c := errorCode(raw); c != "" {
				r.code = c
			}
		}
	}
	if err := r.close('}', msg("the answer is not one JSON object")); err != nil {
		return nil, err
	}
	if !haveCash {
		return nil, errors.New("the answer has no cash")
	}
	return p, nil
}

// investments reads the value of an "investments" member: null (none) or a
// list of objects.
func (r *portfolioReader) investments() ([]Investment, error) {
	switch r.dec.PeekKind() {
	case 'n':
		_, err := r.value()
		return nil, err
	case '[':
	case 0:
		_, err := r.dec.ReadToken()
		return nil, jsonTextCause(err)
	default:
		if _, err := r.value(); err != nil {
			return nil, err
		}
		return nil, errors.New("investments is not a list")
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return nil, jsonTextCause(err)
	}
	// Sized once from the answer's length (EstateGuru's investments take
	// about 270 bytes each): growing a list of 100,000 by appending
	// allocates it several times over.
	var list []Investment
	if n := len(r.dec.UnreadBuffer()) / 256; n > 16 && r.each == nil {
		list = make([]Investment, 0, n)
	}
	for i := 1; r.dec.PeekKind() != ']'; i++ {
		notObject := func() string { return fmt.Sprintf("investment %d is not a JSON object", i) }
		if err := r.open('{', notObject); err != nil {
			return nil, err
		}
		var a investmentAnswer
		for r.dec.PeekKind() != '}' {
			key, norm, err := r.name()
			if err != nil {
				return nil, err
			}
			raw, err := r.value()
			if err != nil {
				return nil, err
			}
			a.member(norm, key, raw)
		}
		if err := r.close('}', notObject); err != nil {
			return nil, err
		}
		inv, err := a.investment(i)
		if err != nil {
			return nil, err
		}
		if r.each != nil {
			if err := r.each(inv); err != nil {
				return nil, callerError{err}
			}
			continue
		}
		list = append(list, inv)
	}
	if err := r.close(']', msg("investments is not a list")); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil // an empty list is none, as null is
	}
	return list, nil
}

// name reads a member's name: as spelled (valid until the next read) and
// normalized (see normKey).
func (r *portfolioReader) name() (key, norm []byte, err error) {
	raw, err := r.dec.ReadValue()
	if err != nil {
		return nil, nil, jsonTextCause(err)
	}
	key = raw[1 : len(raw)-1]
	if bytes.IndexByte(key, '\\') >= 0 || !utf8.Valid(key) {
		s, err := stringValue([]byte(raw))
		if err != nil {
			return nil, nil, err
		}
		key = []byte(s)
	}
	r.norm = r.norm[:0]
	for _, c := range key {
		switch {
		case c == '_' || c == '-':
		case 'A' <= c && c <= 'Z':
			r.norm = append(r.norm, c+'a'-'A')
		default:
			r.norm = append(r.norm, c)
		}
	}
	return key, r.norm, nil
}

func (r *portfolioReader) value() ([]byte, error) {
	raw, err := r.dec.ReadValue()
	if err != nil {
		return nil, jsonTextCause(err)
	}
	return raw, nil
}

// open reads the delimiter that opens an object or list; msg when the next
// value is something else.
func (r *portfolioReader) open(want jsontext.Kind, msg func() string) error {
	switch r.dec.PeekKind() {
	case want:
		_, err := r.dec.ReadToken()
		return jsonTextCause(err)
	case 0:
		_, err := r.dec.ReadToken()
		return jsonTextCause(err)
	}
	if _, err := r.value(); err != nil {
		return err
	}
	return errors.New(msg())
}

// close reads the delimiter that ends an object or list.
func (r *portfolioReader) close(want jsontext.Kind, msg func() string) error {
	t, err := r.dec.ReadToken()
	if err != nil {
		return jsonTextCause(err)
	}
	if t.Kind() != want {
		return errors.New(msg())
	}
	return nil
}

// msg is an error message made only when it is needed.
func msg(s string) func() string { return func() string { return s } }

// onlySpace reports whether b is JSON white space alone.
func onlySpace(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

// jsonTextCause keeps a JSON error's position but never a quoted value.
func jsonTextCause(err error) error {
	if err == nil {
		return nil
	}
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	case errors.As(err, &se):
		return fmt.Errorf("broken JSON at byte %d", se.ByteOffset)
	}
	return errors.New("undecodable JSON")
}

// investmentAnswer is one investment object of a userInvestments answer.
type investmentAnswer struct {
	Name, ResourcePath                                                           field[Text]
	Quantity                                                                     field[Count]
	InvestmentAmount, MarketValue, PrincipalLeft, Profit, RealizedIncome, Change field[Cents]
}

// member decodes the value of the member with this normalized key (see
// normKey); false for a member that does not matter.
func (a *investmentAnswer) member(norm, key, raw []byte) bool {
	switch string(norm) {
	case "name":
		set(&a.Name, key, raw, text)
	case "quantity":
		set(&a.Quantity, key, raw, count)
	case "resourcepath":
		set(&a.ResourcePath, key, raw, text)
	case "investmentamount":
		set(&a.InvestmentAmount, key, raw, cents)
	case "marketvalue":
		set(&a.MarketValue, key, raw, cents)
	case "principalleft":
		set(&a.PrincipalLeft, key, raw, cents)
	case "profit":
		set(&a.Profit, key, raw, cents)
	case "realizedincome":
		set(&a.RealizedIncome, key, raw, cents)
	case "change":
		set(&a.Change, key, raw, cents)
	default:
		return false
	}
	return true
}

// investment is the i-th (1-based) investment, or the first refused value
// in it: its name and path first (they say which investment a bad value is
// in), then its quantity and amounts.
func (a *investmentAnswer) investment(i int) (Investment, error) {
	var inv Investment
	for _, f := range []*field[Text]{&a.Name, &a.ResourcePath} {
		if f.err != nil {
			return inv, fmt.Errorf("investment %d: %s: %w", i, cleanText(f.key, 40), f.err)
		}
	}
	inv.Name = string(a.Name.v)
	inv.ResourcePath = strings.TrimSpace(string(a.ResourcePath.v))
	inv.LoanID = loanID(inv.ResourcePath)
	where := func(key string, err error) error {
		return fmt.Errorf("investment %d (%s): %s: %w", i, describeInvestment(inv), cleanText(key, 40), err)
	}
	if a.Quantity.err != nil {
		return inv, where(a.Quantity.key, a.Quantity.err)
	}
	inv.Quantity = int64(a.Quantity.v)
	for _, f := range [...]struct {
		in  *field[Cents]
		out *int64
	}{
		{&a.InvestmentAmount, &inv.InvestmentAmountCents},
		{&a.MarketValue, &inv.MarketValueCents},
		{&a.PrincipalLeft, &inv.PrincipalLeftCents},
		{&a.Profit, &inv.ProfitCents},
		{&a.RealizedIncome, &inv.RealizedIncomeCents},
		{&a.Change, &inv.ChangeCents},
	} {
		if f.in.err != nil {
			return inv, where(f.in.key, f.in.err)
		}
		*f.out = int64(f.in.v)
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
