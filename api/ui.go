package api

import (
	"bytes"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
	"github.com/modelgate/modelgate/ui"
)

// uiRefresh is how often the endpoint page reloads itself, in seconds.
const uiRefresh = 15

func (s *Server) uiRoutes(e *gin.Engine) {
	tpl, err := ui.ParseTemplates()
	if err != nil {
		panic("ui templates: " + err.Error()) // embedded at build time: a broken build, never input
	}
	s.tpl = tpl
	e.GET("/ui", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/ui/") })
	e.GET("/ui/", s.uiIndex)
	e.GET("/ui/endpoints/:endpoint", s.uiEndpoint)
	e.StaticFS("/ui/static", http.FS(ui.Assets()))
}

func (s *Server) html(c *gin.Context, render func(*bytes.Buffer) error) {
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		s.writeError(c, err)
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

func (s *Server) uiIndex(c *gin.Context) {
	page := &ui.IndexPage{}
	now := s.now()
	for _, ep := range s.reg.Endpoints() {
		rep := s.BuildReport(c.Request.Context(), ep, counters.AllSegment, now, time.Time{}, time.Time{})
		var trials uint64
		for _, a := range rep.Arms {
			trials += a.Trials
		}
		page.Endpoints = append(page.Endpoints, ui.IndexEntry{Name: ep.Name, Arms: strings.Join(ep.Arms, ", "),
			Trials: trials, Decision: ui.DecisionText(rep, stopRule(ep))})
	}
	s.html(c, func(b *bytes.Buffer) error { return s.tpl.Index(b, page) })
}

func (s *Server) uiEndpoint(c *gin.Context) {
	q, err := s.parseReportQuery(c)
	if err != nil {
		if f := fault.As(err); f != nil && f.Code == "invalid_format" {
			err = fault.Field("format", "invalid_format", "the page has no format parameter")
		}
		s.writeError(c, err)
		return
	}
	now := s.now()
	rep := s.BuildReport(c.Request.Context(), q.ep, q.segment, now, q.from, q.to)
	hist := &report.History{Endpoint: q.ep.Name, Segment: q.segment}
	if s.analytics.Series != nil {
		if h, err := report.ReadHistory(c.Request.Context(), s.analytics.Series, q.ep.Name, q.segment, s.analytics.Interval, q.from, q.to); err == nil {
			hist = h
		}
	}
	prior := bandit.Prior{Alpha: q.ep.Policy.Prior.Alpha, Beta: q.ep.Policy.Prior.Beta}
	in := ui.Input{Report: rep, History: hist, Prior: prior, Rule: stopRule(q.ep), RewardCap: q.ep.Policy.Reward.ValueCap(), Refresh: uiRefresh}
	if q.to.IsZero() || q.to.After(now) {
		// The range reaches the present: the live report is the charts'
		// newest point, so they are useful before the first interval ends.
		in.Now = now
	}
	page := ui.Build(in)
	s.html(c, func(b *bytes.Buffer) error { return s.tpl.Endpoint(b, page) })
}

func stopRule(ep *registry.Endpoint) ui.StopRule {
	r := ep.Policy.StopRule
	return ui.StopRule{PBest: r.PBest, ValueRemaining: r.ValueRemaining, MinTrials: r.MinTrials}
}
