package redislist

import (
	"fmt"
	"strings"
)

// Placeholders a key template may hold.
const (
	phModel   = "model"
	phVersion = "version"
	phUserID  = "user_id"
	phContext = "context."
)

// part is one piece of a template: literal text, or the value of the
// request's user id (user) or of one of its context keys (ctx, the key).
type part struct {
	lit  string
	user bool
	ctx  string
}

// template is a key template with {model} and {version} already replaced
// by the version's own names: what remains depends on the request. It is
// parsed once, when a version is checked and when it is loaded; building a
// key is a concatenation, without regular expressions. The zero template
// builds no key.
type template struct {
	parts []part
	size  int // the literal bytes, to size the key
}

// parseTemplate parses s, replacing {model} and {version} with model and
// version. A placeholder is {model}, {version}, {user_id} or {context.KEY}
// (KEY non-empty, without braces); anything else in braces, an unclosed
// "{" and a "}" outside a placeholder are errors, so a literal brace cannot
// be written. With user false, {user_id} is an error too (a default list
// is the list of users without one). A template must start with literal
// text before any request value, and may build no key under
// ReservedPrefix.
func parseTemplate(s, model, version string, user bool) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{lit: lit.String()})
			t.size += lit.Len()
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case '}':
			return template{}, fmt.Errorf("a %q at byte %d closes no placeholder", "}", i)
		case '{':
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] != '}' {
				return template{}, fmt.Errorf("the placeholder at byte %d is not closed", i)
			}
			name := s[i+1 : i+1+end]
			switch {
			case name == phModel:
				lit.WriteString(model)
			case name == phVersion:
				lit.WriteString(version)
			case name == phUserID && user:
				flush()
				t.parts = append(t.parts, part{user: true})
			case name == phUserID:
				return template{}, fmt.Errorf("{user_id} cannot be used here: this key is for users without a list of their own")
			case strings.HasPrefix(name, phContext) && len(name) > len(phContext):
				flush()
				t.parts = append(t.parts, part{ctx: name[len(phContext):]})
			default:
				return template{}, fmt.Errorf("unknown placeholder {%s} (want {model}, {version}, {user_id} or {context.KEY})", name)
			}
			i += end + 2
		default:
			lit.WriteByte(s[i])
			i++
		}
	}
	flush()
	if h, fixed := t.head(); len(t.parts) > 0 && !fixed && (h == "" || strings.HasPrefix(ReservedPrefix, h)) {
		// Request values choose the rest of the key: without literal text
		// of its own first, a client could name any key of the database.
		return template{}, fmt.Errorf("must start with literal text, e.g. \"recs:{user_id}\", that no key of the gateway's own (%q…) starts with", ReservedPrefix)
	}
	if h, _ := t.head(); strings.HasPrefix(h, ReservedPrefix) {
		return template{}, fmt.Errorf("keys starting with %q are the gateway's own state, not lists", ReservedPrefix)
	}
	return t, nil
}

// ReservedPrefix starts the keys of the gateway's own state in a Redis it
// shares (store/redisstore.DefaultPrefix). No key template may build such
// a key: a list is never read from there, whatever a request's values.
const ReservedPrefix = "modelgate:"

// head returns the literal text before the first request value, and
// whether the template has no request values (head is then the whole
// key).
func (t template) head() (string, bool) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.user || p.ctx != "" {
			return b.String(), false
		}
		b.WriteString(p.lit)
	}
	return b.String(), true
}

// fixed reports whether the template builds the same key for every request.
func (t template) fixed() bool {
	for _, p := range t.parts {
		if p.user || p.ctx != "" {
			return false
		}
	}
	return true
}

// empty reports whether the template builds no key (it was not given).
func (t template) empty() bool { return len(t.parts) == 0 }

// build returns the key for a request, or false when a value it needs is
// missing: a context key the request does not have, or has empty. An empty
// value is treated as a missing one, so that a key never silently drops a
// part.
func (t template) build(userID string, ctx map[string]string) (string, bool) {
	if len(t.parts) == 1 && t.parts[0].lit != "" {
		return t.parts[0].lit, true
	}
	n := t.size
	for _, p := range t.parts {
		switch {
		case p.user:
			n += len(userID)
		case p.ctx != "":
			n += len(ctx[p.ctx])
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range t.parts {
		v := p.lit
		switch {
		case p.user:
			v = userID
		case p.ctx != "":
			v = ctx[p.ctx]
		}
		if v == "" {
			return "", false
		}
		b.WriteString(v)
	}
	return b.String(), true
}
