package ui

import (
	"embed"
	"html/template"
	"io"
	"io/fs"
)

//go:embed assets/*.css templates/*.html
var files embed.FS

// Assets holds the page's static files (served under /ui/static/).
func Assets() fs.FS {
	sub, _ := fs.Sub(files, "assets")
	return sub
}

var funcs = template.FuncMap{
	"pct":   func(x float64) string { return fmtPct(x) },
	"num":   func(x float64) string { return fmtNum(x) },
	"count": fmtCount,
	"color": Color,
}

// Templates are parsed once; Templates is safe for concurrent use.
type Templates struct{ t *template.Template }

// ParseTemplates parses the embedded templates.
func ParseTemplates() (*Templates, error) {
	t, err := template.New("").Funcs(funcs).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &Templates{t: t}, nil
}

// Index renders the list of endpoints.
func (t *Templates) Index(w io.Writer, p *IndexPage) error {
	return t.t.ExecuteTemplate(w, "index.html", p)
}

// Endpoint renders an endpoint's page.
func (t *Templates) Endpoint(w io.Writer, p *EndpointPage) error {
	return t.t.ExecuteTemplate(w, "endpoint.html", p)
}
