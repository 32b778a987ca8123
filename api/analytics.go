package api

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/offpolicy"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/router"
	"github.com/modelgate/modelgate/shadow"
)

// Analytics are the analysts' data sources: the off-policy sums and the
// report history. Zero fields turn their features off.
type Analytics struct {
	OffPolicy *offpolicy.Table
	Series    report.Series
	Interval  time.Duration // history interval
	// Shadows gives the report's shadows; nil reports none.
	Shadows ShadowSummaries
}

// ShadowSummaries gives the report's entries of an endpoint's shadows;
// *shadow.Recorder is one.
type ShadowSummaries interface {
	Summaries(ctx context.Context, endpoint string, shadows []registry.Shadow) ([]shadow.Summary, error)
}

// shadowsTimeout bounds the read of the shadows' sums behind a report.
const shadowsTimeout = 2 * time.Second

func (s *Server) analystRoutes(e *gin.Engine, v1 *gin.RouterGroup) {
	v1.GET("/endpoints/:endpoint/report", s.getReport)
	v1.GET("/endpoints/:endpoint/report/history", s.getHistory)
	s.uiRoutes(e)
}

// reportQuery is a report request's validated parameters.
type reportQuery struct {
	ep       *registry.Endpoint
	segment  string
	from, to time.Time
	format   string
}

func (s *Server) parseReportQuery(c *gin.Context) (*reportQuery, error) {
	ep, err := s.reg.Endpoint(c.Param("endpoint"))
	if err != nil {
		return nil, err
	}
	q := &reportQuery{ep: ep, segment: c.DefaultQuery("segment", counters.AllSegment), format: c.DefaultQuery("format", "json")}
	if q.format != "json" && q.format != "csv" {
		return nil, fault.Field("format", "invalid_format", "must be json or csv")
	}
	if q.segment == "" {
		q.segment = counters.AllSegment
	}
	if q.segment != counters.AllSegment && (q.segment == counters.AggregateSegment || q.segment == counters.HoldoutSegment || !s.table.Known(ep.Name, q.segment)) {
		return nil, fault.New(fault.NotFound, "segment_not_found",
			"endpoint %s has no segment %q (segments are written like surface=music; see the report's \"segments\")", ep.Name, q.segment)
	}
	for _, b := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.from}, {"to", &q.to}} {
		if v := c.Query(b.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, fault.Field(b.name, "invalid_time", "%q is not an RFC 3339 time like 2026-11-26T10:00:00Z", v)
			}
			*b.dst = t
		}
	}
	if !q.from.IsZero() && !q.to.IsZero() && !q.from.Before(q.to) {
		return nil, fault.Field("to", "invalid_time", "must be after from")
	}
	return q, nil
}

// BuildReport computes an endpoint segment's report as GET …/report does,
// with off-policy estimates over [from, to). When the shadows' sums cannot
// be read, the report says so in a warning (shadows_unavailable) and lists
// no shadows.
func (s *Server) BuildReport(ctx context.Context, ep *registry.Endpoint, segment string, now, from, to time.Time) *report.Report {
	snap := s.reg.Snapshot()
	in := report.Input{Endpoint: ep, Table: s.table, Errors: s.router.Errors(), Segment: segment, Now: now,
		Available: func(arm string) bool { return router.Available(snap.Versions[arm]) },
		Shares:    s.router.PolicyShares(ep.Name, segment)}
	if s.analytics.OffPolicy != nil {
		all := segment == counters.AllSegment || segment == ""
		res := s.analytics.OffPolicy.Query(ep.Name, segment, all, from, to)
		in.OffPolicy = &res
	}
	var shadowErr error
	if s.analytics.Shadows != nil && len(ep.Shadows) > 0 {
		sctx, cancel := context.WithTimeout(ctx, shadowsTimeout)
		in.Shadows, shadowErr = s.analytics.Shadows.Summaries(sctx, ep.Name, ep.Shadows)
		cancel()
	}
	rep := report.Build(in)
	if shadowErr != nil {
		s.log.WarnContext(ctx, "report without shadows", "endpoint", ep.Name, "err", shadowErr)
		rep.Health.Warnings = append(rep.Health.Warnings, "shadows_unavailable: the shadows' figures could not be read from the store")
	}
	return rep
}

// PointReport completes in as the report behind a history point: the
// router's cached traffic shares (no Monte Carlo of its own for them when
// the router has some) and no off-policy sums, which a point does not hold.
// The "all" point of a segmented endpoint computes its shares as the report
// does: the router refreshes its endpoint-wide shares only while segments
// start, so cached ones can be long stale (once per endpoint and tick).
func (s *Server) PointReport(in report.Input) *report.Report {
	snap := s.reg.Snapshot()
	in.Table, in.Errors = s.table, s.router.Errors()
	in.Available = func(arm string) bool { return router.Available(snap.Versions[arm]) }
	if len(in.Endpoint.Policy.SegmentBy) > 0 && (in.Segment == "" || in.Segment == counters.AllSegment) {
		in.Shares = s.router.PolicyShares(in.Endpoint.Name, in.Segment)
	} else {
		in.Shares = s.router.CachedShares(in.Endpoint.Name, in.Segment)
	}
	return report.Build(in)
}

func (s *Server) getReport(c *gin.Context) {
	q, err := s.parseReportQuery(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	rep := s.BuildReport(c.Request.Context(), q.ep, q.segment, s.now(), q.from, q.to)
	if q.format == "csv" {
		csvHeaders(c, q.ep.Name+"-report.csv")
		writeReportCSV(c.Writer, rep)
		return
	}
	c.JSON(http.StatusOK, rep)
}

func (s *Server) getHistory(c *gin.Context) {
	q, err := s.parseReportQuery(c)
	if err != nil {
		s.writeError(c, err)
		return
	}
	if s.analytics.Series == nil {
		s.writeError(c, fault.New(fault.NotFound, "history_disabled", "this server records no history"))
		return
	}
	h, err := report.ReadHistory(c.Request.Context(), s.analytics.Series, q.ep.Name, q.segment, s.analytics.Interval, q.from, q.to)
	if err != nil {
		s.writeError(c, &fault.Error{Kind: fault.Unavailable, Code: "store_unavailable", Message: "reading history", Err: err})
		return
	}
	if q.format == "csv" {
		csvHeaders(c, q.ep.Name+"-history.csv")
		writeHistoryCSV(c.Writer, h)
		return
	}
	c.JSON(http.StatusOK, h)
}

func csvHeaders(c *gin.Context, name string) {
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	c.Status(http.StatusOK)
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }

// fmtCount writes a success count exactly: whole counts as integers,
// fractional ones (value rewards) in as many decimals as they need.
func fmtCount(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func writeReportCSV(w io.Writer, r *report.Report) {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"endpoint", "segment", "arm", "state", "trials", "successes", "rate", "ci95_low", "ci95_high",
		"p_best", "expected_loss", "traffic_share", "off_policy_n", "off_policy_ips", "off_policy_snips",
		"off_policy_ci95_low", "off_policy_ci95_high", "decision", "decision_arm", "value_remaining",
		"srm_p_value", "regret_expected_cumulative", "off_policy_served", "off_policy_dr",
		"off_policy_dr_ci95_low", "off_policy_dr_ci95_high", "mean_value"})
	winner := ""
	if r.Decision.Arm != nil {
		winner = *r.Decision.Arm
	}
	srm := ""
	if r.Health.SRMPValue != nil {
		srm = fmtFloat(*r.Health.SRMPValue)
	}
	for _, a := range r.Arms {
		row := []string{r.Endpoint, r.Segment, a.Arm, a.State, strconv.FormatUint(a.Trials, 10),
			fmtCount(a.Successes), fmtFloat(a.Rate), fmtFloat(a.CI95[0]), fmtFloat(a.CI95[1]), fmtFloat(a.PBest),
			fmtFloat(a.ExpectedLoss), fmtFloat(a.TrafficShare), "", "", "", "", ""}
		if o := a.OffPolicy; o != nil {
			row[12], row[13], row[14], row[15], row[16] = strconv.Itoa(o.N), fmtFloat(o.IPS), fmtFloat(o.SNIPS), fmtFloat(o.CI95[0]), fmtFloat(o.CI95[1])
		}
		row = append(row, r.Decision.Status, winner, fmtFloat(r.Decision.ValueRemaining), srm, fmtFloat(r.Regret.ExpectedCumulative), "", "", "", "")
		if o := a.OffPolicy; o != nil {
			n := len(row)
			row[n-4], row[n-3], row[n-2], row[n-1] = strconv.Itoa(o.Served), fmtFloat(o.DR), fmtFloat(o.DRCI95[0]), fmtFloat(o.DRCI95[1])
		}
		mean := "" // a click endpoint has no mean value
		if a.MeanValue != nil {
			mean = fmtFloat(*a.MeanValue)
		}
		row = append(row, mean)
		_ = cw.Write(row)
	}
	cw.Flush()
}

func writeHistoryCSV(w io.Writer, h *report.History) {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"t", "endpoint", "segment", "arm", "trials", "successes", "traffic_share", "p_best", "regret_expected_cumulative"})
	for _, p := range h.Points {
		for _, a := range p.Arms {
			_ = cw.Write([]string{p.T, h.Endpoint, h.Segment, a.Arm, strconv.FormatUint(a.Trials, 10),
				fmtCount(a.Successes), fmtFloat(a.TrafficShare), fmtFloat(a.PBest), fmtFloat(p.RegretExpectedCumulative)})
		}
	}
	cw.Flush()
}
