package redislist

import (
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	ctx := map[string]string{"surface": "music", "country": "", "a:b": "x"}
	tests := []struct {
		name, tmpl string
		user       bool   // {user_id} allowed
		err        string // a part of the parse error; "" for none
		key        string // the key for user "u42" and ctx
		built      bool   // whether the key can be built
	}{
		{name: "model, version and user", tmpl: "recs:{model}:{version}:{user_id}", user: true, key: "recs:mf:2:u42", built: true},
		{name: "fixed", tmpl: "recs:{model}:{version}:popular", key: "recs:mf:2:popular", built: true},
		{name: "context key", tmpl: "recs:{context.surface}:{user_id}", user: true, key: "recs:music:u42", built: true},
		{name: "context key with a colon", tmpl: "r:{context.a:b}", key: "r:x", built: true},
		{name: "missing context key", tmpl: "recs:{context.lang}:{user_id}", user: true, built: false},
		{name: "empty context value", tmpl: "recs:{context.country}:{user_id}", user: true, built: false},
		{name: "only placeholders besides model", tmpl: "{model}{user_id}", user: true, key: "mfu42", built: true},
		{name: "no template", tmpl: "", key: "", built: true},
		{name: "unknown placeholder", tmpl: "recs:{user}", user: true, err: "unknown placeholder {user}"},
		{name: "empty context name", tmpl: "recs:{context.}", err: "unknown placeholder {context.}"},
		{name: "features are not keys", tmpl: "recs:{features.age}", err: "unknown placeholder"},
		{name: "unclosed", tmpl: "recs:{user_id", user: true, err: "not closed"},
		{name: "nested", tmpl: "recs:{a{user_id}}", user: true, err: "not closed"},
		{name: "stray close", tmpl: "recs:}", err: "closes no placeholder"},
		{name: "user in a default key", tmpl: "recs:{user_id}", user: false, err: "{user_id} cannot be used here"},
		{name: "request values alone", tmpl: "{user_id}", user: true, err: "literal text"},
		{name: "request values first", tmpl: "{user_id}:recs", user: true, err: "literal text"},
		{name: "context alone", tmpl: "{context.surface}", err: "literal text"},
		{name: "could reach the gateway's keys", tmpl: "mod{user_id}", user: true, err: "literal text"},
		{name: "in the gateway's keys", tmpl: "modelgate:x:{user_id}", user: true, err: "the gateway's own state"},
		{name: "fixed in the gateway's keys", tmpl: "modelgate:counters:trials", err: "the gateway's own state"},
		{name: "model makes the head", tmpl: "{model}:{user_id}", user: true, key: "mf:u42", built: true},
		{name: "fixed key like the prefix", tmpl: "model", key: "model", built: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := parseTemplate(tc.tmpl, "mf", "2", tc.user)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse %q: %v, want an error with %q", tc.tmpl, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse %q: %v", tc.tmpl, err)
			}
			key, ok := tp.build("u42", ctx)
			if ok != tc.built || key != tc.key {
				t.Fatalf("build %q = %q, %v; want %q, %v", tc.tmpl, key, ok, tc.key, tc.built)
			}
		})
	}
}

func BenchmarkTemplateBuild(b *testing.B) {
	tp, err := parseTemplate("recs:{model}:{version}:{context.surface}:{user_id}", "mf", "2", true)
	if err != nil {
		b.Fatal(err)
	}
	ctx := map[string]string{"surface": "music"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tp.build("u42", ctx); !ok {
			b.Fatal("not built")
		}
	}
}
