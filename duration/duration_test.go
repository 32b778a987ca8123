package duration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"go.yaml.in/yaml/v3"
)

// The accepted forms are time.ParseDuration's, and the text comes back as
// written, not normalized ("90m" stays "90m", not "1h30m0s").
func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string // "" for accepted, else part of the error
	}{
		{in: "24h", want: 24 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "300ms", want: 300 * time.Millisecond},
		{in: "10us", want: 10 * time.Microsecond},
		{in: "10µs", want: 10 * time.Microsecond},
		{in: "1ns", want: 1},
		{in: "0", want: 0},
		{in: "-2h", want: -2 * time.Hour},
		{in: "+5s", want: 5 * time.Second},
		{in: "2160h", want: 90 * 24 * time.Hour},
		{in: "", wantErr: `"" is not a duration like "90m" or "24h"`},
		{in: "soon", wantErr: `"soon" is not a duration`},
		{in: "1d", wantErr: `unknown unit "d"`},
		{in: "24", wantErr: `missing unit`},
		{in: " 24h", wantErr: `is not a duration`},
		{in: "24h ", wantErr: `is not a duration`},
		{in: "1e3s", wantErr: `is not a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want an error containing %q", tc.in, d, err, tc.wantErr)
				}
				if !d.IsZero() {
					t.Errorf("Parse(%q) failed but returned %q", tc.in, d)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if d.Std() != tc.want || d.String() != tc.in || d.IsZero() {
				t.Errorf("Parse(%q) = (%v, %q, zero %v), want (%v, %q, false)", tc.in, d.Std(), d.String(), d.IsZero(), tc.want, tc.in)
			}
		})
	}
}

func TestZeroValue(t *testing.T) {
	var d Duration
	if !d.IsZero() || d.Std() != 0 || d.String() != "" {
		t.Fatalf("zero Duration = (%v, %q, zero %v)", d.Std(), d.String(), d.IsZero())
	}
	if MustParse("0").IsZero() {
		t.Error(`"0" is a duration written by the user, not the zero value`)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse(\"soon\") did not panic")
		}
	}()
	MustParse("soon")
}

type holder struct {
	Window Duration  `json:"window" yaml:"window"`
	TTL    *Duration `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	Half   Duration  `json:"half,omitzero" yaml:"half,omitempty"`
}

// Each encoding reads the text and writes it back unchanged; the empty
// string and null read as the zero value; other text must parse.
func TestJSONAndYAML(t *testing.T) {
	ttl := MustParse("30m")
	tests := []struct {
		name     string
		json     string // input, and expected output unless jsonOut is set
		jsonOut  string
		yaml     string // input, and expected output unless yamlOut is set
		yamlOut  string
		want     holder
		errMatch string // for an input that must be refused
	}{
		{name: "as written", json: `{"window":"90m","ttl":"30m","half":"72h"}`,
			yaml: "window: 90m\nttl: 30m\nhalf: 72h\n",
			want: holder{Window: MustParse("90m"), TTL: &ttl, Half: MustParse("72h")}},
		{name: "not normalized", json: `{"window":"1h30m0s"}`, yaml: "window: 1h30m0s\n",
			want: holder{Window: MustParse("1h30m0s")}},
		{name: "empty is zero", json: `{"window":""}`, yaml: "window: \"\"\n", want: holder{}},
		{name: "null is zero", json: `{"window":null,"ttl":null,"half":null}`, jsonOut: `{"window":""}`,
			yaml: "window: null\nttl: null\nhalf: null\n", yamlOut: "window: \"\"\n", want: holder{}},
		{name: "absent is zero", json: `{}`, jsonOut: `{"window":""}`, yaml: "{}\n", yamlOut: "window: \"\"\n", want: holder{}},
		{name: "bad text", json: `{"window":"soon"}`, yaml: "window: soon\n", errMatch: `"soon" is not a duration`},
		{name: "days are not a unit", json: `{"window":"2d"}`, yaml: "window: 2d\n", errMatch: `unknown unit "d"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(enc string, got holder, err error) {
				t.Helper()
				if tc.errMatch != "" {
					if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
						t.Fatalf("%s: got %+v, %v; want an error containing %q", enc, got, err, tc.errMatch)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s: %v", enc, err)
				}
				if !equal(got, tc.want) {
					t.Fatalf("%s: got %+v, want %+v", enc, got, tc.want)
				}
			}
			var h1, h2, h3 holder
			err := json.Unmarshal([]byte(tc.json), &h1)
			check("encoding/json", h1, err)
			err = jsonv2.Unmarshal([]byte(tc.json), &h2)
			check("json v2", h2, err)
			err = yaml.Unmarshal([]byte(tc.yaml), &h3)
			check("yaml", h3, err)
			if tc.errMatch != "" {
				return
			}
			wantJSON, wantYAML := tc.json, tc.yaml
			if tc.jsonOut != "" {
				wantJSON = tc.jsonOut
			}
			if tc.yamlOut != "" {
				wantYAML = tc.yamlOut
			}
			if b, err := json.Marshal(tc.want); err != nil || string(b) != wantJSON {
				t.Errorf("encoding/json wrote %s (%v), want %s", b, err, wantJSON)
			}
			if b, err := jsonv2.Marshal(tc.want); err != nil || string(b) != wantJSON {
				t.Errorf("json v2 wrote %s (%v), want %s", b, err, wantJSON)
			}
			if b, err := yaml.Marshal(tc.want); err != nil || string(b) != wantYAML {
				t.Errorf("yaml wrote %q (%v), want %q", b, err, wantYAML)
			}
		})
	}
}

// A JSON number is not a duration, as it was not a string before.
func TestJSONNumberRefused(t *testing.T) {
	var h holder
	if err := json.Unmarshal([]byte(`{"window": 24}`), &h); err == nil {
		t.Fatal("a JSON number decoded as a duration")
	}
}

func equal(a, b holder) bool {
	if (a.TTL == nil) != (b.TTL == nil) || (a.TTL != nil && *a.TTL != *b.TTL) {
		return false
	}
	return a.Window == b.Window && a.Half == b.Half
}
