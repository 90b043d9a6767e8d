package estateguru

import (
	"context"
	"errors"
	"iter"

	"github.com/syncerhq/syncer/sync/provider"
)

// Answer is a userInvestments answer as received (a success status, the
// body read whole), not yet decoded. FetchInvestments returns it so that the
// caller can decode it while it stores it (Stream), or in one go (Decode).
type Answer struct {
	resp   *provider.Response
	reqID  string
	access provider.Secret // scrubbed from every error
}

// Raw is the whole answer, as received.
func (a *Answer) Raw() []byte { return a.resp.Body }

// Decode decodes the whole answer: the Portfolio, or the error Investments
// would return for it.
func (a *Answer) Decode() (*Portfolio, error) {
	p, err := decodeInvestmentsAnswer(a.resp, a.reqID)
	if err != nil {
		return nil, scrub(err, a.access.Reveal())
	}
	return p, nil
}

// ErrNotStreamed is what a Stream's investments end with when the answer
// is not one the fast decoder takes whole (an error answer, an escaped key,
// a malformed amount...): whatever was handed over must be dropped, and
// Decode has the last word on the answer.
var ErrNotStreamed = errors.New("estateguru: the answer needs the careful decoder")

// streamBatch is how many investments are handed over at a time.
const streamBatch = 256

// Stream decodes an answer in the background, handing the investments over
// as they are decoded, so that they can be stored meanwhile: for a portfolio
// of 100,000 investments the decoding (about 150 ms) then overlaps the
// writing instead of preceding it.
//
// It takes the fast path only (portfolio_fast.go). An ordinary answer names
// its currency and cash before its investments, as EstateGuru's do; one
// that does not is still decoded, just not handed over before its end.
//
// The decoder goroutine writes every field; the channels order those writes
// before the reader's reads.
type Stream struct {
	announced bool // currency and cash were known when the investments began
	currency  string
	cash      int64
	header    chan struct{}     // closed once currency and cash are known, or decoding ended
	batches   chan []Investment // growing prefixes of the list; closed when decoding ended
	stop      chan struct{}     // closed by Close: the decoder stops handing over
	result    *Portfolio        // set before batches is closed; nil if the fast path declined
}

// Stream starts decoding the answer in the background. The caller must
// Close it.
func (a *Answer) Stream() *Stream {
	st := &Stream{
		header:  make(chan struct{}),
		batches: make(chan []Investment, 16),
		stop:    make(chan struct{}),
	}
	go func() {
		defer close(st.batches)
		p, ok := decodePortfolioFastTo(a.resp.Body, a.reqID, st)
		if ok {
			p.Raw = a.resp.Body
			st.result = p
		}
		if !st.announced {
			if ok {
				st.currency, st.cash = p.Currency, p.CashCents
			}
			close(st.header)
		}
	}()
	return st
}

// announce is called by the decoder when it meets the investments with the
// currency and cash already read.
func (st *Stream) announce(currency string, cash int64) {
	st.currency, st.cash, st.announced = currency, cash, true
	close(st.header)
}

// handOver passes the investments decoded so far; false when the reader has
// gone (Close), which stops the decoding.
func (st *Stream) handOver(list []Investment) bool {
	if !st.announced {
		return true
	}
	select {
	case st.batches <- list:
		return true
	case <-st.stop:
		return false
	}
}

// Header waits until the portfolio's currency and cash are known. ok is
// false when the fast path declined the answer (Decode decides then).
func (st *Stream) Header(ctx context.Context) (currency string, cashCents int64, ok bool, err error) {
	select {
	case <-st.header:
	case <-ctx.Done():
		return "", 0, false, ctx.Err()
	}
	if !st.announced && st.result == nil {
		return "", 0, false, nil // the decoder ended, declining the answer
	}
	return st.currency, st.cash, true, nil
}

// Investments yields the investments in the answer's order as they are
// decoded, then ErrNotStreamed if the fast path declined the answer after
// all. Call it once, after Header.
func (st *Stream) Investments() iter.Seq2[Investment, error] {
	return func(yield func(Investment, error) bool) {
		done := 0
		for list := range st.batches {
			for ; done < len(list); done++ {
				if !yield(list[done], nil) {
					return
				}
			}
		}
		if st.result == nil {
			yield(Investment{}, ErrNotStreamed)
			return
		}
		for _, inv := range st.result.Investments[done:] {
			if !yield(inv, nil) {
				return
			}
		}
	}
}

// Close stops the decoding if it is still going and waits for it to end.
func (st *Stream) Close() {
	select {
	case <-st.stop:
	default:
		close(st.stop)
	}
	for range st.batches {
	}
}

// NewAnswer is an answer with this body, as if received for the request id
// reqID: what a fake client returns from FetchInvestments.
func NewAnswer(body []byte, reqID string) *Answer {
	return &Answer{resp: &provider.Response{Status: 200, Body: body}, reqID: reqID}
}
