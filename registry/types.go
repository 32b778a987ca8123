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
	"github.com/modelgate/modelgate/bandit"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/duration"
	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/store"
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

// PolicyType names an endpoint's arm-choice policy; its text is what the
// API, the config file and the stored records hold.
type PolicyType string

// Policy types.
const (
	PolicyThompson PolicyType = "thompson"
	// PolicyDiscountedThompson forgets evidence with a half-life
	// (Policy.HalfLife), for click rates that drift.
	PolicyDiscountedThompson PolicyType = "discounted-thompson"
	PolicyUniform            PolicyType = "uniform"
	// PolicyLinearThompson is contextual: a Bayesian linear model of the
	// reward per arm over the request's context vector (context_features,
	// lambda, noise), in place of segments.
	PolicyLinearThompson PolicyType = "linear-thompson"
)

// Valid reports whether t is one of the policy types.
func (t PolicyType) Valid() bool {
	switch t {
	case PolicyThompson, PolicyDiscountedThompson, PolicyUniform, PolicyLinearThompson:
		return true
	}
	return false
}

// TrialEvent is what counts a trial of the served arm (a policy's
// trials_on): serving the prediction, or the client reporting an impression.
type TrialEvent string

// Trial events.
const (
	TrialsOnServe      TrialEvent = "serve"
	TrialsOnImpression TrialEvent = "impression"
)

// Valid reports whether e is one of the trial events.
func (e TrialEvent) Valid() bool { return e == TrialsOnServe || e == TrialsOnImpression }

// Policy is an endpoint's arm-choice policy with every default filled in.
type Policy struct {
	Type      PolicyType `json:"type"`
	Prior     Prior      `json:"prior"`
	SegmentBy []string   `json:"segment_by"`
	MinShare  float64    `json:"min_share"`
	TrialsOn  TrialEvent `json:"trials_on"`
	// AttributionWindow is how long after a prediction its feedback
	// counts (0 < window ≤ 2160h).
	AttributionWindow duration.Duration `json:"attribution_window"`
	StopRule          StopRule          `json:"stop_rule"`
	// HalfLife is the discounted-thompson policy's half-life of evidence
	// (wall-clock time), e.g. "72h"; the zero Duration, and left out of the
	// JSON, for other policies.
	HalfLife duration.Duration `json:"half_life,omitzero"`
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
	// Holdout serves a fixed share of the requests with one arm, never
	// with the bandit, to measure what the bandit is worth; nil turns it
	// off.
	Holdout *Holdout `json:"holdout,omitempty"`
	// ContextFeatures, Lambda and Noise are the linear-thompson policy's
	// context vector (see LinearModel), ridge prior λ > 0 and reward noise
	// scale > 0; empty and 0, and left out of the JSON, for other policies.
	ContextFeatures []ContextFeature `json:"context_features,omitempty"`
	Lambda          float64          `json:"lambda,omitzero"`
	Noise           float64          `json:"noise,omitzero"`

	// linear is the compiled context vector layout of a linear-thompson
	// policy, made when the policy is parsed or decoded.
	linear *LinearModel

	// Reward says what a success is: a click (the zero value, left out of
	// the JSON, so records and ETags of click endpoints are as they always
	// were), or a value reward capped at a cap.
	Reward Reward `json:"reward,omitzero"`
}

// LinearModel returns a linear-thompson policy's context vector layout,
// nil for other policies. Built once per decoded endpoint.
func (p *Policy) LinearModel() *LinearModel {
	if p.Type != PolicyLinearThompson {
		return nil
	}
	if p.linear == nil {
		return newLinearModel(p.ContextFeatures) // a Policy made by hand
	}
	return p.linear
}

// RewardType names what an endpoint counts as its reward.
type RewardType string

// Reward types.
const (
	// RewardClick: a prediction is a success when it gets a click.
	RewardClick RewardType = "click"
	// RewardValue: a prediction adds min(Σ value, cap) / cap of its
	// reward events to its arm's successes.
	RewardValue RewardType = "value"
)

// MaxRewardCap is the largest cap a value reward may have.
const MaxRewardCap = 1e12

// Reward is a policy's reward. The zero value is the click reward: an
// endpoint body's {"type": "click"} is stored as it, like a policy stored
// before the field existed.
type Reward struct {
	Type RewardType `json:"type"`
	// Cap is a value reward's cap (0 < Cap ≤ MaxRewardCap); 0 for clicks.
	Cap float64 `json:"cap,omitempty"`
}

// ValueCap returns the cap of a value reward, 0 for a click reward: what
// feedback normalises reward values by (counters.RewardUnits) and the
// report scales mean values by.
func (r Reward) ValueCap() float64 {
	if r.Type == RewardValue {
		return r.Cap
	}
	return 0
}

// MaxHoldoutShare is the largest share of requests a holdout may take.
const MaxHoldoutShare = 0.5

// Holdout: a Share of the requests (0 < Share ≤ MaxHoldoutShare), drawn
// at random, or per user when the policy is sticky, is served by Arm (one
// of the endpoint's arms) in place of the bandit's choice. These
// predictions are trials of the holdout only: they are counted in the
// counters.HoldoutSegment cells, which the bandit never reads.
type Holdout struct {
	Arm   string  `json:"arm"`
	Share float64 `json:"share"`
}

// Bandit returns the policy as package bandit draws from it: its prior,
// floor and kind (uniform, or Thompson sampling for thompson and
// discounted-thompson, whose discounting is in the counts it is given).
// The router and the report both convert through it, so a report's shares
// are those of the policy the router runs.
func (p *Policy) Bandit() bandit.Policy {
	bp := bandit.Policy{Prior: bandit.Prior{Alpha: p.Prior.Alpha, Beta: p.Prior.Beta}, MinShare: p.MinShare}
	if p.Type == PolicyUniform {
		bp.Kind = bandit.Uniform
	}
	return bp
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
	TTL duration.Duration `json:"ttl"`
}

// StickyTTL is how long a user keeps an assigned arm: 0 when the policy
// keeps no assignments (Sticky is nil).
func (p *Policy) StickyTTL() time.Duration {
	if p.Sticky == nil {
		return 0
	}
	return p.Sticky.TTL.Std()
}

// Guardrails pause an arm automatically when, over the sliding Window and
// with at least MinRequests calls, its error rate exceeds MaxErrorRate or
// its p99 latency exceeds MaxP99Ms (each limit 0 = not checked). A paused
// arm is never resumed by itself.
type Guardrails struct {
	MaxErrorRate float64           `json:"max_error_rate"`
	MaxP99Ms     float64           `json:"max_p99_ms"`
	Window       duration.Duration `json:"window"`
	MinRequests  int               `json:"min_requests"`
}

// ArmState says whether an arm takes traffic; its text is what the API and
// the stored records hold.
type ArmState string

// Arm states.
const (
	Active ArmState = "active"
	// Paused arms get no traffic; a guardrail or an auto_arms drain pauses
	// an arm too, and only a resume brings it back.
	Paused ArmState = "paused"
)

// Valid reports whether s is one of the arm states.
func (s ArmState) Valid() bool { return s == Active || s == Paused }

// Endpoint is what a client calls: arms, a policy and an optional fallback.
// ArmStates holds Active or Paused for every arm.
type Endpoint struct {
	Name      string              `json:"name"`
	Arms      []string            `json:"arms"`
	ArmStates map[string]ArmState `json:"arm_states"`
	// ArmReasons says why an arm was paused automatically (guardrail,
	// auto_arms drain); a pause or resume through the API clears it.
	ArmReasons map[string]string `json:"arm_reasons,omitempty"`
	Policy     Policy            `json:"policy"`
	Fallback   string            `json:"fallback,omitempty"`
	AutoArms   *AutoArms         `json:"auto_arms,omitempty"`
	// Shadows are versions also asked for a list on a share of the
	// requests, after the response, to compare with what was served; they
	// get no trial and no traffic share. Empty (and left out of the JSON)
	// when the endpoint has none.
	Shadows   []Shadow  `json:"shadows,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
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
	Type              *PolicyType      `json:"type"`
	Prior             *priorBody       `json:"prior"`
	SegmentBy         []string         `json:"segment_by"`
	MinShare          *float64         `json:"min_share"`
	TrialsOn          *TrialEvent      `json:"trials_on"`
	AttributionWindow *string          `json:"attribution_window"`
	StopRule          *stopRuleBody    `json:"stop_rule"`
	HalfLife          *string          `json:"half_life"`
	SegmentPrior      *float64         `json:"segment_prior_weight"`
	Sticky            *stickyBody      `json:"sticky"`
	Guardrails        *guardBody       `json:"guardrails"`
	MaxSegments       *int64           `json:"max_segments"`
	Holdout           *holdoutBody     `json:"holdout"`
	ContextFeatures   []jsontext.Value `json:"context_features"`
	Lambda            *float64         `json:"lambda"`
	Noise             *float64         `json:"noise"`
	Reward            *rewardBody      `json:"reward"`
}

// rewardBody is Reward as a request writes it: a missing cap is told apart
// from a zero one.
type rewardBody struct {
	Type RewardType `json:"type"`
	Cap  *float64   `json:"cap"`
}

// holdoutBody is Holdout as a request writes it: a missing share is told
// apart from a zero one.
type holdoutBody struct {
	Arm   string   `json:"arm"`
	Share *float64 `json:"share"`
}

// stickyBody, guardBody and autoArmsBody are Sticky, Guardrails and
// AutoArms as a request writes them: their durations are text until the
// field's own rule (and error message) has judged them.
type stickyBody struct {
	TTL string `json:"ttl"`
}

type guardBody struct {
	MaxErrorRate float64 `json:"max_error_rate"`
	MaxP99Ms     float64 `json:"max_p99_ms"`
	Window       string  `json:"window"`
	MinRequests  int     `json:"min_requests"`
}

type autoArmsBody struct {
	Model    string `json:"model"`
	Interval string `json:"interval"`
}

// AutoArms makes an endpoint watch a model for new versions: each new
// version found (a new numeric directory next to an embedded version's
// directory, or a new AVAILABLE version in TF Serving) is registered like the
// model's newest registered version and added as an arm; an arm of the model
// whose version disappears is paused (drained).
type AutoArms struct {
	Model string `json:"model"`
	// Interval is how often the model is looked at (1s..24h).
	Interval duration.Duration `json:"interval"`
}

// endpointBody is the request body of PUT /v1/endpoints/{e}.
type endpointBody struct {
	Arms     []string      `json:"arms"`
	Policy   *policyBody   `json:"policy"`
	Fallback string        `json:"fallback"`
	AutoArms *autoArmsBody `json:"auto_arms"`
	Shadows  []shadowBody  `json:"shadows"`
}

// MaxShadows is the most shadows one endpoint may have.
const MaxShadows = 8

// Shadow is a registered version (not one of the endpoint's arms) asked
// for a list, too, on a Share (0 < Share ≤ 1) of the endpoint's requests,
// after the response is sent; what it answers is only compared with what
// was served (the report's shadows), never shown to the client.
type Shadow struct {
	Arm   string  `json:"arm"`
	Share float64 `json:"share"`
}

// shadowBody is Shadow as a request writes it: a missing share is told
// apart from a zero one.
type shadowBody struct {
	Arm   string   `json:"arm"`
	Share *float64 `json:"share"`
}

// DefaultPolicy is the policy an endpoint body without "policy" gets.
func DefaultPolicy() Policy {
	return Policy{Type: PolicyThompson, Prior: Prior{1, 1}, SegmentBy: []string{}, MinShare: 0.01,
		TrialsOn: TrialsOnServe, AttributionWindow: duration.MustParse("24h"),
		StopRule:    StopRule{PBest: 0.95, ValueRemaining: 0.01, MinTrials: 1000},
		MaxSegments: counters.DefaultMaxSegments}
}

// parsePolicy validates a policy body and fills in the defaults. Each
// duration is parsed here, once, together with its range check.
func parsePolicy(in *policyBody) (Policy, error) {
	p := DefaultPolicy()
	if in == nil {
		return p, nil
	}
	if in.Type != nil {
		if !in.Type.Valid() {
			return p, fault.Field("policy.type", "invalid_policy", "unknown policy %q (want thompson, discounted-thompson, uniform or linear-thompson)", *in.Type)
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
		if !in.TrialsOn.Valid() {
			return p, fault.Field("policy.trials_on", "invalid_policy", "must be serve or impression")
		}
		p.TrialsOn = *in.TrialsOn
	}
	if in.AttributionWindow != nil {
		d, err := duration.Parse(*in.AttributionWindow)
		if err != nil || d.Std() <= 0 || d.Std() > store.MaxAttributionWindow {
			return p, fault.Field("policy.attribution_window", "invalid_policy", "must be a duration like \"24h\" or \"90m\", > 0 and ≤ 2160h")
		}
		p.AttributionWindow = d
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
	if p.Type == PolicyDiscountedThompson {
		if in.HalfLife == nil {
			return p, fault.Field("policy.half_life", "invalid_policy", "discounted-thompson needs a half_life, e.g. \"72h\"")
		}
		d, err := duration.Parse(*in.HalfLife)
		if err != nil || d.Std() < time.Minute || d.Std() > 365*24*time.Hour {
			return p, fault.Field("policy.half_life", "invalid_policy", "must be a duration from 1m to 8760h")
		}
		p.HalfLife = d
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
		d, err := duration.Parse(st.TTL)
		if err != nil || d.Std() < time.Second || d.Std() > 30*24*time.Hour {
			return p, fault.Field("policy.sticky.ttl", "invalid_policy", "must be a duration from 1s to 720h, e.g. \"30m\"")
		}
		p.Sticky = &Sticky{TTL: d}
	}
	if g := in.Guardrails; g != nil {
		if g.Window == "" {
			g.Window = "1m"
		}
		if g.MinRequests == 0 {
			g.MinRequests = 20
		}
		window, err := duration.Parse(g.Window)
		switch d := window.Std(); {
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
		p.Guardrails = &Guardrails{MaxErrorRate: g.MaxErrorRate, MaxP99Ms: g.MaxP99Ms, Window: window, MinRequests: g.MinRequests}
	}
	if err := parseLinear(in, &p); err != nil {
		return p, err
	}
	if h := in.Holdout; h != nil {
		if _, _, ok := SplitArm(h.Arm); !ok {
			return p, fault.Field("policy.holdout.arm", "invalid_holdout", "name one of the endpoint's arms, e.g. \"mf@1\"")
		}
		if h.Share == nil || !(*h.Share > 0 && *h.Share <= MaxHoldoutShare) {
			return p, fault.Field("policy.holdout.share", "invalid_holdout", "must be in (0, %g]", MaxHoldoutShare)
		}
		p.Holdout = &Holdout{Arm: h.Arm, Share: *h.Share}
	}
	if r := in.Reward; r != nil {
		switch r.Type {
		case RewardClick:
			if r.Cap != nil {
				return p, fault.Field("policy.reward.cap", "invalid_policy", "applies to value rewards only")
			}
			p.Reward = Reward{}
		case RewardValue:
			if r.Cap == nil || !(*r.Cap > 0 && *r.Cap <= MaxRewardCap) {
				return p, fault.Field("policy.reward.cap", "invalid_policy", "a value reward needs a cap in (0, %g]", MaxRewardCap)
			}
			p.Reward = Reward{Type: RewardValue, Cap: *r.Cap}
		default:
			return p, fault.Field("policy.reward.type", "invalid_policy", "must be click or value")
		}
	}
	return p, nil
}

// parseLinear checks the linear-thompson fields: required context_features
// (at most bandit.MaxLinearDims dimensions), lambda and noise with their
// defaults, and no segment_by (the policy is contextual instead); other
// policies may not set them.
func parseLinear(in *policyBody, p *Policy) error {
	if p.Type != PolicyLinearThompson {
		var field string
		switch {
		case in.ContextFeatures != nil:
			field = "context_features"
		case in.Lambda != nil:
			field = "lambda"
		case in.Noise != nil:
			field = "noise"
		default:
			return nil
		}
		return fault.Field("policy."+field, "invalid_policy", "applies to linear-thompson only")
	}
	if len(p.SegmentBy) > 0 {
		return fault.Field("policy.segment_by", "invalid_policy", "linear-thompson is contextual: name the context keys in context_features, not segment_by")
	}
	if len(in.ContextFeatures) == 0 {
		return fault.Field("policy.context_features", "invalid_policy", "linear-thompson needs context_features, e.g. [\"surface\"]")
	}
	feats, err := parseContextFeatures(in.ContextFeatures)
	if err != nil {
		return err
	}
	p.ContextFeatures, p.Lambda, p.Noise = feats, DefaultLinearLambda, DefaultLinearNoise
	if in.Lambda != nil {
		if !(*in.Lambda > 0 && *in.Lambda <= 1e6) {
			return fault.Field("policy.lambda", "invalid_policy", "must be > 0 and ≤ 1e6")
		}
		p.Lambda = *in.Lambda
	}
	if in.Noise != nil {
		if !(*in.Noise > 0 && *in.Noise <= 1e3) {
			return fault.Field("policy.noise", "invalid_policy", "must be > 0 and ≤ 1000")
		}
		p.Noise = *in.Noise
	}
	p.linear = newLinearModel(p.ContextFeatures)
	return nil
}
