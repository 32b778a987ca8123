package feedback

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/telemetry"
)

// recorded counts a feedback call's events by result and ends its span.
func (s *Service) recorded(ctx context.Context, span trace.Span, events int, res *Result, err error) {
	if res != nil {
		s.met.FeedbackEvents(ctx, "accepted", int64(res.Accepted))
		s.met.FeedbackEvents(ctx, "duplicate", int64(res.Duplicates))
		for _, r := range res.Rejected {
			s.met.FeedbackEvents(ctx, r.Code, 1)
		}
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("modelgate.events", events))
		if res != nil {
			span.SetAttributes(attribute.Int("modelgate.accepted", res.Accepted),
				attribute.Int("modelgate.duplicates", res.Duplicates), attribute.Int("modelgate.rejected", len(res.Rejected)))
		}
		if err != nil {
			class := "error"
			if fe := fault.As(err); fe != nil {
				class = fe.Code
			}
			telemetry.Fail(span, err, class)
		}
	}
	span.End()
}

// flushed records one flush of pending trials and ends its span.
func (s *Service) flushed(ctx context.Context, span trace.Span, pending map[counters.Key]uint64, d time.Duration, err error) {
	s.met.Flush(ctx, d, err)
	if span.IsRecording() {
		var n uint64
		for _, v := range pending {
			n += v
		}
		span.SetAttributes(attribute.Int64("modelgate.trials", int64(n)), attribute.Int("modelgate.cells", len(pending)))
		telemetry.Fail(span, err, "store_unavailable")
	}
	span.End()
}
