package main

// `modelgate endpoints …`: list, show (with the report), apply, add-arm,
// pause and resume through /v1/endpoints.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/registry"
	"github.com/modelgate/modelgate/report"
)

var endpointsGroup = newCLIGroup("endpoints",
	"Lists, shows and changes endpoints through the gateway's HTTP API (/v1/endpoints).",
	cli.Sub{Name: "list", Args: "", Summary: "every endpoint: arms, policy, fallback", Run: runEndpointsList},
	cli.Sub{Name: "show", Args: "NAME", Summary: "one endpoint: policy, fallback, and per arm its state and report numbers", Run: runEndpointsShow},
	cli.Sub{Name: "apply", Args: "NAME --file BODY.json", Summary: "create or replace an endpoint from its JSON body", Run: runEndpointsApply},
	cli.Sub{Name: "add-arm", Args: "NAME ARM", Summary: "add a registered version as an active arm, while serving", Run: runEndpointsAddArm},
	cli.Sub{Name: "promote", Args: "NAME ARM", Summary: "make a shadow an active arm, while serving", Run: runEndpointsPromote},
	cli.Sub{Name: "pause", Args: "NAME ARM", Summary: "the kill switch: the arm gets no traffic from the next request", Run: runEndpointsPause},
	cli.Sub{Name: "resume", Args: "NAME ARM", Summary: "make a paused arm active again", Run: runEndpointsResume},
)

func runEndpoints(args []string, stdout, stderr io.Writer) int {
	return endpointsGroup.Run(args, stdout, stderr)
}

// armsSummary is "mf@1, mf@2 (paused)".
func armsSummary(e *registry.Endpoint) string {
	parts := make([]string, len(e.Arms))
	for i, a := range e.Arms {
		parts[i] = a
		if st := e.ArmStates[a]; st != "" && st != registry.Active {
			parts[i] += " (" + string(st) + ")"
		}
	}
	return strings.Join(parts, ", ")
}

// activeArms lists the arms that can serve.
func activeArms(e *registry.Endpoint) string {
	var out []string
	for _, a := range e.Arms {
		if st := e.ArmStates[a]; st == "" || st == registry.Active {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// segments describes segment_by.
func segmentsText(e *registry.Endpoint) string {
	if len(e.Policy.SegmentBy) == 0 {
		return "one segment (" + counters.AllSegment + ")"
	}
	return "by " + strings.Join(e.Policy.SegmentBy, ", ")
}

// policyShort is the policy in one table cell.
func policyShort(e *registry.Endpoint) string {
	return fmt.Sprintf("%s, %s, min_share %g", e.Policy.Type, segmentsText(e), e.Policy.MinShare)
}

func runEndpointsList(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("endpoints list", "[--server URL] [--json]",
		"Lists every endpoint (GET /v1/endpoints): its arms (paused ones marked), policy, fallback and\n"+
			"when it was last changed.", stdout, stderr)
	if _, code, ok := c.Parse(args, 0, 0); !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	eps, err := cl.Endpoints(context.Background(), client.RawBody(&raw))
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	if len(eps) == 0 {
		fmt.Fprintln(stdout, "no endpoints")
		return cli.ExitOK
	}
	tw := cli.NewTable(stdout)
	cli.Row(tw, "ENDPOINT", "ARMS", "POLICY", "FALLBACK", "UPDATED")
	for _, e := range eps {
		cli.Row(tw, e.Name, armsSummary(e), policyShort(e), e.Fallback, cliTime(e.UpdatedAt))
	}
	tw.Flush()
	return cli.ExitOK
}

func runEndpointsShow(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("endpoints show", "NAME [--segment SEGMENT] [--server URL] [--json]",
		"Shows one endpoint (GET /v1/endpoints/NAME): its policy and fallback, and per arm its state and\n"+
			"the report's numbers (GET /v1/endpoints/NAME/report): trials, successes, rate (posterior mean),\n"+
			"P(best) and traffic share, then the report's decision.\n"+
			"With --json the output is {\"endpoint\": <endpoint JSON>, \"report\": <report JSON>}.", stdout, stderr)
	var segment string
	c.Flags.StringVar(&segment, "segment", "", "report one segment, e.g. surface=music (default: all segments added up)")
	c.Placeholder("segment", "SEGMENT")
	pos, code, ok := c.Parse(args, 1, 1)
	if !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	name := pos[0]
	ctx := context.Background()
	var epRaw, repRaw []byte
	ep, err := cl.Endpoint(ctx, name, client.RawBody(&epRaw))
	if err != nil {
		return c.fail(err)
	}
	rep, repErr := cl.Report(ctx, name, client.ReportQuery{Segment: segment}, client.RawBody(&repRaw))
	if c.json {
		if repErr != nil {
			return c.fail(fmt.Errorf("report: %w", repErr))
		}
		out, _ := json.Marshal(struct {
			Endpoint json.RawMessage `json:"endpoint"`
			Report   json.RawMessage `json:"report"`
		}{epRaw, repRaw})
		return c.printRaw(out)
	}
	if repErr != nil {
		rep = &report.Report{} // the arms are shown without numbers
	}
	p := ep.Policy
	tw := cli.NewTable(stdout)
	fmt.Fprintf(tw, "endpoint:\t%s\n", ep.Name)
	fmt.Fprintf(tw, "policy:\t%s, prior Beta(%g, %g), min_share %g, trials on %s, attribution window %s\n",
		p.Type, p.Prior.Alpha, p.Prior.Beta, p.MinShare, p.TrialsOn, p.AttributionWindow)
	fmt.Fprintf(tw, "segments:\t%s\n", segmentsText(ep))
	fmt.Fprintf(tw, "stop rule:\twinner at P(best) ≥ %g or value remaining < %g, after ≥ %d trials\n",
		p.StopRule.PBest, p.StopRule.ValueRemaining, p.StopRule.MinTrials)
	fallback := ep.Fallback
	if fallback == "" {
		fallback = "none"
	}
	fmt.Fprintf(tw, "fallback:\t%s\n", fallback)
	if ep.AutoArms != nil {
		fmt.Fprintf(tw, "auto arms:\tnew versions of %s, checked every %s\n", ep.AutoArms.Model, ep.AutoArms.Interval)
	}
	fmt.Fprintf(tw, "created:\t%s\n", cliTime(ep.CreatedAt))
	fmt.Fprintf(tw, "updated:\t%s\n", cliTime(ep.UpdatedAt))
	tw.Flush()
	fmt.Fprintln(stdout)
	if repErr == nil {
		fmt.Fprintf(stdout, "report, segment %s, generated %s:\n", rep.Segment, cliTimeText(rep.GeneratedAt))
	}
	tw = cli.NewTable(stdout)
	cli.Row(tw, "ARM", "STATE", "TRIALS", "SUCCESSES", "RATE", "P_BEST", "SHARE")
	for _, arm := range ep.Arms {
		cells := []string{arm, string(ep.ArmStates[arm]), "", "", "", "", ""}
		for _, a := range rep.Arms {
			if a.Arm == arm {
				cells[2] = fmt.Sprint(a.Trials)
				cells[3] = fmt.Sprint(a.Successes)
				cells[4] = fmt.Sprintf("%.4f", a.Rate)
				cells[5] = fmt.Sprintf("%.3f", a.PBest)
				cells[6] = fmt.Sprintf("%.3f", a.TrafficShare)
			}
		}
		cli.Row(tw, cells...)
	}
	tw.Flush()
	if repErr != nil {
		return c.fail(fmt.Errorf("report: %w", repErr))
	}
	d := rep.Decision
	decision := d.Status
	if d.Arm != nil {
		decision += " " + *d.Arm
		if d.Reason != nil {
			decision += " (by " + *d.Reason + ")"
		}
	}
	fmt.Fprintf(stdout, "decision: %s, value remaining %.4f, expected cumulative regret %.1f\n",
		decision, d.ValueRemaining, rep.Regret.ExpectedCumulative)
	if len(rep.Health.Warnings) > 0 {
		fmt.Fprintf(stdout, "warnings: %s\n", strings.Join(rep.Health.Warnings, ", "))
	}
	if len(rep.Segments) > 0 && segment == "" {
		fmt.Fprintf(stdout, "segments seen: %s (show one with --segment)\n", strings.Join(rep.Segments, ", "))
	}
	return cli.ExitOK
}

func runEndpointsApply(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("endpoints apply", "NAME --file BODY.json [--server URL] [--json]",
		"Creates (201) or replaces (200) an endpoint with the API's endpoint body (PUT /v1/endpoints/NAME):\n"+
			"{\"arms\": [\"mf@1\", \"mf@2\"], \"policy\": {…}, \"fallback\": \"mf@1\"}. Every arm must be a\n"+
			"registered version. Replacing keeps the paused state of arms that remain. \"-\" reads standard input.", stdout, stderr)
	var file string
	c.Flags.StringVar(&file, "file", "", "the endpoint body, a JSON file (required)")
	c.Placeholder("file", "BODY.json")
	pos, code, ok := c.Parse(args, 1, 1)
	if !ok {
		return code
	}
	if !c.IsSet("file") || file == "" {
		return c.UsageError("--file is required")
	}
	body, err := readJSONFile("file", file)
	if err != nil {
		return c.UsageError("%v", err)
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	ep, created, err := cl.PutEndpointJSON(context.Background(), pos[0], body, client.RawBody(&raw))
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	verb := "replaced"
	if created {
		verb = "created"
	}
	fmt.Fprintf(stdout, "%s endpoint %s: arms %s; %s", verb, ep.Name, armsSummary(ep), policyShort(ep))
	if ep.Fallback != "" {
		fmt.Fprintf(stdout, "; fallback %s", ep.Fallback)
	}
	fmt.Fprintln(stdout)
	return cli.ExitOK
}

func runEndpointsAddArm(args []string, stdout, stderr io.Writer) int {
	return newArm(args, stdout, stderr, "add-arm", "added",
		"Adds a registered model version (ARM is MODEL@VERSION, e.g. mf@3) to an endpoint as an active\n"+
			"arm, while it serves (POST /v1/endpoints/NAME/arms). Its posterior starts at the prior.",
		(*client.Client).AddArm)
}

func runEndpointsPromote(args []string, stdout, stderr io.Writer) int {
	return newArm(args, stdout, stderr, "promote", "promoted",
		"Makes a shadow of an endpoint (ARM is MODEL@VERSION, e.g. mf@3) an active arm and ends it as a\n"+
			"shadow, in one change, while it serves (POST /v1/endpoints/NAME/shadows/ARM/promote). Its\n"+
			"posterior starts at the prior: what it did as a shadow is not a trial.",
		(*client.Client).PromoteShadow)
}

// newArm runs a subcommand that makes ARM an active arm of endpoint NAME
// through change (add-arm, promote).
func newArm(args []string, stdout, stderr io.Writer, name, did, about string,
	change func(*client.Client, context.Context, string, string, ...client.CallOption) (*registry.Endpoint, error)) int {
	c := newCLICmd("endpoints "+name, "NAME ARM [--server URL] [--json]", about, stdout, stderr)
	pos, code, ok := c.Parse(args, 2, 2)
	if !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	ep, err := change(cl, context.Background(), pos[0], pos[1], client.RawBody(&raw))
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	fmt.Fprintf(stdout, "%s %s to %s; arms: %s\n", did, pos[1], ep.Name, armsSummary(ep))
	return cli.ExitOK
}

func runEndpointsPause(args []string, stdout, stderr io.Writer) int {
	return setArmState(args, stdout, stderr, "pause", registry.Paused,
		"The kill switch: pauses an arm of an endpoint (PATCH /v1/endpoints/NAME/arms/ARM\n"+
			"{\"state\": \"paused\"}). From the next request on it is never chosen and never serves as\n"+
			"fallback; its counts are kept. 'modelgate endpoints resume' undoes it.")
}

func runEndpointsResume(args []string, stdout, stderr io.Writer) int {
	return setArmState(args, stdout, stderr, "resume", registry.Active,
		"Makes a paused arm of an endpoint active again (PATCH /v1/endpoints/NAME/arms/ARM\n"+
			"{\"state\": \"active\"}), with the counts it had.")
}

func setArmState(args []string, stdout, stderr io.Writer, verb string, state registry.ArmState, about string) int {
	c := newCLICmd("endpoints "+verb, "NAME ARM [--server URL] [--json]", about, stdout, stderr)
	pos, code, ok := c.Parse(args, 2, 2)
	if !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	ep, err := cl.SetArmState(context.Background(), pos[0], pos[1], state, client.RawBody(&raw))
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	did := "paused"
	if state == registry.Active {
		did = "resumed"
	}
	fmt.Fprintf(stdout, "%s %s on %s; active arms: %s\n", did, pos[1], ep.Name, activeArms(ep))
	return cli.ExitOK
}
