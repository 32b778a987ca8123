package api

import (
	"bytes"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/fault"
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
		rep := s.BuildReport(ep, "all", now, time.Time{}, time.Time{})
		var trials uint64
		for _, a := range rep.Arms {
			trials += a.Trials
		}
		page.Endpoints = append(page.Endpoints, ui.IndexEntry{Name: ep.Name, Arms: strings.Join(ep.Arms, ", "),
			Trials: trials, Decision: ui.DecisionText(rep, ep.Policy.StopRule.PBest, ep.Policy.StopRule.MinTrials)})
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
	rep := s.BuildReport(q.ep, q.segment, s.now(), q.from, q.to)
	hist := &report.History{Endpoint: q.ep.Name, Segment: q.segment}
	if s.analytics.Series != nil {
		if h, err := report.ReadHistory(c.Request.Context(), s.analytics.Series, q.ep.Name, q.segment, s.analytics.Interval, q.from, q.to); err == nil {
			hist = h
		}
	}
	prior := bandit.Prior{Alpha: q.ep.Policy.Prior.Alpha, Beta: q.ep.Policy.Prior.Beta}
	page := ui.Build(rep, hist, prior, q.ep.Policy.StopRule.PBest, q.ep.Policy.StopRule.MinTrials, uiRefresh)
	s.html(c, func(b *bytes.Buffer) error { return s.tpl.Endpoint(b, page) })
}
