package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/fault"
)

// BackendSpec says which runtime computes a version's scores: Type names
// the backend's driver, and Config is that driver's decoded config (see
// backend.Driver). It encodes as the JSON object the API, the config file
// and the store use: {"type": Type, …Config's members}.
//
// A spec decoded from JSON by itself (not by a Registry) holds the object
// as read and a nil Config; it encodes back to that object. The registry
// decodes Config through the drivers it has.
type BackendSpec struct {
	Type   string
	Config backend.Config
	raw    []byte
}

// Timeout is the deadline of one scoring call the config sets; 0 leaves the
// caller's default.
func (b *BackendSpec) Timeout() time.Duration {
	if b.Config == nil {
		return 0
	}
	return b.Config.Timeout()
}

// MarshalJSON encodes the spec as {"type": …, …config}.
func (b BackendSpec) MarshalJSON() ([]byte, error) {
	if b.Config != nil {
		return backend.EncodeConfig(b.Type, b.Config)
	}
	if b.raw != nil {
		return b.raw, nil
	}
	return json.Marshal(struct {
		Type string `json:"type"`
	}{b.Type})
}

// UnmarshalJSON reads the type and keeps the object as it is, for the
// registry to decode with the type's driver.
func (b *BackendSpec) UnmarshalJSON(data []byte) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	*b = BackendSpec{Type: head.Type, raw: bytes.Clone(data)}
	return nil
}

// ModelVersion is one immutable, registered model version as stored and as
// returned by the API.
type ModelVersion struct {
	Name      string          `json:"name"`
	Version   string          `json:"version"`
	Arm       string          `json:"arm"`
	Backend   BackendSpec     `json:"backend"`
	Features  json.RawMessage `json:"features"`
	Metadata  map[string]any  `json:"metadata"`
	CreatedAt time.Time       `json:"created_at"`
	// Revision grows by one with every stored change of the version; a
	// record stored before revisions existed reads as 1.
	Revision uint64 `json:"revision"`
}

// Prior is the Beta prior of every arm's click rate.
type Prior struct {
	Alpha float64 `json:"alpha"`
	Beta  float64 `json:"beta"`
}

// StopRule says when a report calls a winner.
type StopRule struct {
	PBest          float64 `json:"p_best"`
	ValueRemaining float64 `json:"value_remaining"`
	MinTrials      uint64  `json:"min_trials"`
}

// Policy is an endpoint's arm-choice policy with every default filled in.
type Policy struct {
	Type              string   `json:"type"`
	Prior             Prior    `json:"prior"`
	SegmentBy         []string `json:"segment_by"`
	MinShare          float64  `json:"min_share"`
	TrialsOn          string   `json:"trials_on"`
	AttributionWindow string   `json:"attribution_window"`
	StopRule          StopRule `json:"stop_rule"`
	// HalfLife is the discounted-thompson policy's half-life of evidence
	// (wall-clock time), e.g. "72h"; empty for other policies.
	HalfLife string `json:"half_life,omitempty"`
	// SegmentPriorWeight is the pseudo-count a segment borrows from the
	// endpoint-wide posterior as its prior; 0 turns borrowing off.
	SegmentPriorWeight float64 `json:"segment_prior_weight"`
	// Sticky keeps a user on its arm for a while; nil turns it off.
	Sticky *Sticky `json:"sticky,omitempty"`
	// Guardrails pause an arm whose errors or latency breach limits; nil
	// turns them off.
	Guardrails *Guardrails `json:"guardrails,omitempty"`
	// MaxSegments caps the segments the endpoint keeps (1..MaxMaxSegments);
	// requests beyond it go to the overflow segment "other". 0 (a policy
	// stored before the field existed) means DefaultMaxSegments: use
	// SegmentCap.
	MaxSegments int `json:"max_segments"`

	// d holds the durations above, parsed once (compile) so the request
	// path does not parse them on every call.
	d policyDurations
}

type policyDurations struct {
	ok                                  bool
	window, halfLife, sticky, guardWind time.Duration
}

// compile parses the policy's durations once.
func (p *Policy) compile() {
	p.d = policyDurations{}
	p.d.window, p.d.halfLife, p.d.sticky, p.d.guardWind = p.Window(), p.Discounted(), p.StickyTTL(), p.GuardWindow()
	p.d.ok = true
}

// UnmarshalJSON decodes a stored policy and parses its durations.
func (p *Policy) UnmarshalJSON(b []byte) error {
	type plain Policy
	var q plain
	if err := json.Unmarshal(b, &q); err != nil {
		return err
	}
	*p = Policy(q)
	p.compile()
	return nil
}

// MaxMaxSegments is the largest max_segments a policy may set.
const MaxMaxSegments = 100000

// SegmentCap is the number of named segments the endpoint keeps.
func (p *Policy) SegmentCap() int {
	if p.MaxSegments <= 0 {
		return counters.DefaultMaxSegments
	}
	return p.MaxSegments
}

// Sticky assignment: a user keeps the arm it was first given for TTL, while
// that arm stays active and available.
type Sticky struct {
	TTL string `json:"ttl"`
}

// Guardrails pause an arm automatically when, over the sliding Window and
// with at least MinRequests calls, its error rate exceeds MaxErrorRate or
// its p99 latency exceeds MaxP99Ms (each limit 0 = not checked). A paused
// arm is never resumed by itself.
type Guardrails struct {
	MaxErrorRate float64 `json:"max_error_rate"`
	MaxP99Ms     float64 `json:"max_p99_ms"`
	Window       string  `json:"window"`
	MinRequests  int     `json:"min_requests"`
}

// Discounted returns the half-life of a discounted-thompson policy, or 0.
func (p *Policy) Discounted() time.Duration {
	if p.d.ok {
		return p.d.halfLife
	}
	if p.Type != "discounted-thompson" {
		return 0
	}
	d, _ := time.ParseDuration(p.HalfLife)
	return d
}

// StickyTTL is the sticky assignment's lifetime, or 0 when off.
func (p *Policy) StickyTTL() time.Duration {
	if p.d.ok {
		return p.d.sticky
	}
	if p.Sticky == nil {
		return 0
	}
	d, _ := time.ParseDuration(p.Sticky.TTL)
	return d
}

// GuardWindow is the guardrails' sliding window, or 0 when off.
func (p *Policy) GuardWindow() time.Duration {
	if p.d.ok {
		return p.d.guardWind
	}
	if p.Guardrails == nil {
		return 0
	}
	d, _ := time.ParseDuration(p.Guardrails.Window)
	return d
}

// Window is the parsed attribution window.
func (p *Policy) Window() time.Duration {
	if p.d.ok {
		return p.d.window
	}
	d, _ := time.ParseDuration(p.AttributionWindow)
	return d
}

// Arm states.
const (
	Active = "active"
	Paused = "paused"
)

// Endpoint is what a client calls: arms, a policy and an optional fallback.
// ArmStates holds "active" or "paused" for every arm.
type Endpoint struct {
	Name      string            `json:"name"`
	Arms      []string          `json:"arms"`
	ArmStates map[string]string `json:"arm_states"`
	// ArmReasons says why an arm was paused automatically (guardrail,
	// auto_arms drain); a pause or resume through the API clears it.
	ArmReasons map[string]string `json:"arm_reasons,omitempty"`
	Policy     Policy            `json:"policy"`
	Fallback   string            `json:"fallback,omitempty"`
	AutoArms   *AutoArms         `json:"auto_arms,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	// Revision grows by one with every stored change of the endpoint
	// (including automatic pauses); a record stored before revisions
	// existed reads as 1.
	Revision uint64 `json:"revision"`
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// ValidName reports whether s may name a model or an endpoint.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidVersion reports whether s may name a model version.
func ValidVersion(s string) bool { return versionRE.MatchString(s) }

// SplitArm splits "name@version".
func SplitArm(arm string) (name, version string, ok bool) {
	i := strings.LastIndexByte(arm, '@')
	if i <= 0 || i == len(arm)-1 {
		return "", "", false
	}
	name, version = arm[:i], arm[i+1:]
	return name, version, ValidName(name) && ValidVersion(version)
}

// VersionBody is the request body of PUT /v1/models/{m}/versions/{v}, as a
// client builds it: Backend is required (a BackendSpec with its driver's
// Config); Features and Metadata are optional. The registry reads the same
// JSON with the backend object kept raw, to decode it with its type's driver.
type VersionBody struct {
	Backend  *BackendSpec    `json:"backend"`
	Features json.RawMessage `json:"features,omitempty"`
	Metadata map[string]any  `json:"metadata,omitempty"`
}

// versionWire is VersionBody as the registry decodes it: the backend object
// raw, decoded by its type's driver after the body.
type versionWire struct {
	Backend  jsontext.Value  `json:"backend"`
	Features json.RawMessage `json:"features"`
	Metadata map[string]any  `json:"metadata"`
}

type priorBody struct {
	Alpha *float64 `json:"alpha"`
	Beta  *float64 `json:"beta"`
}

type stopRuleBody struct {
	PBest          *float64 `json:"p_best"`
	ValueRemaining *float64 `json:"value_remaining"`
	MinTrials      *int64   `json:"min_trials"`
}

type policyBody struct {
	Type              *string       `json:"type"`
	Prior             *priorBody    `json:"prior"`
	SegmentBy         []string      `json:"segment_by"`
	MinShare          *float64      `json:"min_share"`
	TrialsOn          *string       `json:"trials_on"`
	AttributionWindow *string       `json:"attribution_window"`
	StopRule          *stopRuleBody `json:"stop_rule"`
	HalfLife          *string       `json:"half_life"`
	SegmentPrior      *float64      `json:"segment_prior_weight"`
	Sticky            *Sticky       `json:"sticky"`
	Guardrails        *Guardrails   `json:"guardrails"`
	MaxSegments       *int64        `json:"max_segments"`
}

// AutoArms makes an endpoint watch a model for new versions: each new
// version found (a new numeric directory next to an embedded version's
// directory, or a new AVAILABLE version in TF Serving) is registered like the
// model's newest registered version and added as an arm; an arm of the model
// whose version disappears is paused (drained).
type AutoArms struct {
	Model    string `json:"model"`
	Interval string `json:"interval"`
}

// Every is the parsed watch interval.
func (a *AutoArms) Every() time.Duration {
	d, _ := time.ParseDuration(a.Interval)
	return d
}

// endpointBody is the request body of PUT /v1/endpoints/{e}.
type endpointBody struct {
	Arms     []string    `json:"arms"`
	Policy   *policyBody `json:"policy"`
	Fallback string      `json:"fallback"`
	AutoArms *AutoArms   `json:"auto_arms"`
}

// DefaultPolicy is the policy an endpoint body without "policy" gets.
func DefaultPolicy() Policy {
	return Policy{Type: "thompson", Prior: Prior{1, 1}, SegmentBy: []string{}, MinShare: 0.01,
		TrialsOn: "serve", AttributionWindow: "24h",
		StopRule:    StopRule{PBest: 0.95, ValueRemaining: 0.01, MinTrials: 1000},
		MaxSegments: counters.DefaultMaxSegments}
}

func parsePolicy(in *policyBody) (Policy, error) {
	p, err := parsePolicyFields(in)
	if err == nil {
		p.compile()
	}
	return p, err
}

func parsePolicyFields(in *policyBody) (Policy, error) {
	p := DefaultPolicy()
	if in == nil {
		return p, nil
	}
	if in.Type != nil {
		if *in.Type != "thompson" && *in.Type != "uniform" && *in.Type != "discounted-thompson" {
			return p, fault.Field("policy.type", "invalid_policy", "unknown policy %q (want thompson, discounted-thompson or uniform)", *in.Type)
		}
		p.Type = *in.Type
	}
	if in.Prior != nil {
		if in.Prior.Alpha != nil {
			p.Prior.Alpha = *in.Prior.Alpha
		}
		if in.Prior.Beta != nil {
			p.Prior.Beta = *in.Prior.Beta
		}
		if !(p.Prior.Alpha > 0 && p.Prior.Alpha <= 1e6) {
			return p, fault.Field("policy.prior.alpha", "invalid_policy", "must be > 0 and ≤ 1e6")
		}
		if !(p.Prior.Beta > 0 && p.Prior.Beta <= 1e6) {
			return p, fault.Field("policy.prior.beta", "invalid_policy", "must be > 0 and ≤ 1e6")
		}
	}
	if in.SegmentBy != nil {
		if len(in.SegmentBy) > 8 {
			return p, fault.Field("policy.segment_by", "invalid_policy", "at most 8 context keys")
		}
		seen := map[string]bool{}
		for i, k := range in.SegmentBy {
			if k == "" || len(k) > 128 || seen[k] || strings.ContainsAny(k, "=,%\x00") {
				return p, fault.Field(fmt.Sprintf("policy.segment_by[%d]", i), "invalid_policy", "context keys must be 1-128 bytes, unique and free of '=', ',' and '%%'")
			}
			seen[k] = true
		}
		p.SegmentBy = in.SegmentBy
	}
	if in.MaxSegments != nil {
		if *in.MaxSegments < 1 || *in.MaxSegments > MaxMaxSegments {
			return p, fault.Field("policy.max_segments", "invalid_policy", "must be between 1 and %d", MaxMaxSegments)
		}
		p.MaxSegments = int(*in.MaxSegments)
	}
	if in.MinShare != nil {
		if !(*in.MinShare >= 0 && *in.MinShare < 1) {
			return p, fault.Field("policy.min_share", "invalid_policy", "must be in [0, 1)")
		}
		p.MinShare = *in.MinShare
	}
	if in.TrialsOn != nil {
		if *in.TrialsOn != "serve" && *in.TrialsOn != "impression" {
			return p, fault.Field("policy.trials_on", "invalid_policy", "must be serve or impression")
		}
		p.TrialsOn = *in.TrialsOn
	}
	if in.AttributionWindow != nil {
		d, err := time.ParseDuration(*in.AttributionWindow)
		if err != nil || d <= 0 || d > 90*24*time.Hour {
			return p, fault.Field("policy.attribution_window", "invalid_policy", "must be a duration like \"24h\" or \"90m\", > 0 and ≤ 2160h")
		}
		p.AttributionWindow = *in.AttributionWindow
	}
	if r := in.StopRule; r != nil {
		if r.PBest != nil {
			if !(*r.PBest > 0.5 && *r.PBest <= 1) {
				return p, fault.Field("policy.stop_rule.p_best", "invalid_policy", "must be in (0.5, 1]")
			}
			p.StopRule.PBest = *r.PBest
		}
		if r.ValueRemaining != nil {
			if !(*r.ValueRemaining >= 0 && *r.ValueRemaining < 1) {
				return p, fault.Field("policy.stop_rule.value_remaining", "invalid_policy", "must be in [0, 1)")
			}
			p.StopRule.ValueRemaining = *r.ValueRemaining
		}
		if r.MinTrials != nil {
			if *r.MinTrials < 0 {
				return p, fault.Field("policy.stop_rule.min_trials", "invalid_policy", "must be ≥ 0")
			}
			p.StopRule.MinTrials = uint64(*r.MinTrials)
		}
	}
	if p.Type == "discounted-thompson" {
		if in.HalfLife == nil {
			return p, fault.Field("policy.half_life", "invalid_policy", "discounted-thompson needs a half_life, e.g. \"72h\"")
		}
		if d, err := time.ParseDuration(*in.HalfLife); err != nil || d < time.Minute || d > 365*24*time.Hour {
			return p, fault.Field("policy.half_life", "invalid_policy", "must be a duration from 1m to 8760h")
		}
		p.HalfLife = *in.HalfLife
	} else if in.HalfLife != nil {
		return p, fault.Field("policy.half_life", "invalid_policy", "applies to discounted-thompson only")
	}
	if in.SegmentPrior != nil {
		if !(*in.SegmentPrior >= 0 && *in.SegmentPrior <= 1e6) {
			return p, fault.Field("policy.segment_prior_weight", "invalid_policy", "must be in [0, 1e6]")
		}
		p.SegmentPriorWeight = *in.SegmentPrior
	}
	if st := in.Sticky; st != nil {
		if d, err := time.ParseDuration(st.TTL); err != nil || d < time.Second || d > 30*24*time.Hour {
			return p, fault.Field("policy.sticky.ttl", "invalid_policy", "must be a duration from 1s to 720h, e.g. \"30m\"")
		}
		p.Sticky = st
	}
	if g := in.Guardrails; g != nil {
		if g.Window == "" {
			g.Window = "1m"
		}
		if g.MinRequests == 0 {
			g.MinRequests = 20
		}
		switch d, err := time.ParseDuration(g.Window); {
		case err != nil || d < time.Second || d > 24*time.Hour:
			return p, fault.Field("policy.guardrails.window", "invalid_policy", "must be a duration from 1s to 24h")
		case !(g.MaxErrorRate >= 0 && g.MaxErrorRate < 1):
			return p, fault.Field("policy.guardrails.max_error_rate", "invalid_policy", "must be in [0, 1); 0 = not checked")
		case !(g.MaxP99Ms >= 0 && g.MaxP99Ms <= 600000):
			return p, fault.Field("policy.guardrails.max_p99_ms", "invalid_policy", "must be in [0, 600000]; 0 = not checked")
		case g.MinRequests < 1:
			return p, fault.Field("policy.guardrails.min_requests", "invalid_policy", "must be ≥ 1")
		case g.MaxErrorRate == 0 && g.MaxP99Ms == 0:
			return p, fault.Field("policy.guardrails", "invalid_policy", "set max_error_rate, max_p99_ms or both")
		}
		p.Guardrails = g
	}
	return p, nil
}
