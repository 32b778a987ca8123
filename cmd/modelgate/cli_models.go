package main

// `modelgate models …`: list, show, register and delete model versions
// through /v1/models.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/modelgate/modelgate/backend/embedded"
	"github.com/modelgate/modelgate/backend/tfserving"
	"github.com/modelgate/modelgate/client"
	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/registry"
)

var modelsGroup = newCLIGroup("models",
	"Registers, lists, shows and deletes model versions through the gateway's HTTP API (/v1/models).",
	cli.Sub{Name: "list", Args: "", Summary: "every registered version: backend, path or target, created, metadata", Run: runModelsList},
	cli.Sub{Name: "show", Args: "MODEL VERSION", Summary: "one version: backend, metadata, feature spec", Run: runModelsShow},
	cli.Sub{Name: "register", Args: "MODEL VERSION …", Summary: "register a version from --file, --embedded or --tfserving", Run: runModelsRegister},
	cli.Sub{Name: "delete", Args: "MODEL VERSION", Summary: "delete a version no endpoint uses", Run: runModelsDelete},
)

func runModels(args []string, stdout, stderr io.Writer) int {
	return modelsGroup.Run(args, stdout, stderr)
}

// backendFields is a version's backend as the JSON object the server sent,
// so that tables show every field it set, by name, whatever its type.
func backendFields(b registry.BackendSpec) map[string]any {
	raw, err := json.Marshal(b)
	if err != nil {
		return map[string]any{}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || m == nil {
		return map[string]any{}
	}
	return m
}

// modelVersionArgs takes MODEL VERSION, or MODEL@VERSION as one argument.
func (c *cliCmd) modelVersionArgs(args []string) (model, version string, code int, ok bool) {
	pos, code, ok := c.Parse(args, 1, 2)
	if !ok {
		return "", "", code, false
	}
	if len(pos) == 1 {
		i := strings.LastIndexByte(pos[0], '@')
		if i <= 0 || i == len(pos[0])-1 {
			return "", "", c.UsageError("missing VERSION (give MODEL VERSION or MODEL@VERSION)"), false
		}
		return pos[0][:i], pos[0][i+1:], cli.ExitOK, true
	}
	return pos[0], pos[1], cli.ExitOK, true
}

func runModelsList(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("models list", "[--server URL] [--json]",
		"Lists every registered model version (GET /v1/models): model, version, backend type, its path\n"+
			"(embedded, onnx) or target (tfserving, oip), when it was registered, and its metadata in short.", stdout, stderr)
	if _, code, ok := c.Parse(args, 0, 0); !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	models, err := cl.Models(context.Background(), client.RawBody(&raw))
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	n := 0
	tw := cli.NewTable(stdout)
	for _, m := range models {
		for _, v := range m.Versions {
			if n == 0 {
				cli.Row(tw, "MODEL", "VERSION", "BACKEND", "PATH/TARGET", "CREATED", "METADATA")
			}
			n++
			b := backendFields(v.Backend)
			cli.Row(tw, v.Name, v.Version, cliValue(b["type"]), backendWhere(b), cliTime(v.CreatedAt), metadataSummary(v.Metadata, 60))
		}
	}
	tw.Flush()
	if n == 0 {
		fmt.Fprintln(stdout, "no model versions registered")
	}
	return cli.ExitOK
}

// backendWhere is the path of an embedded backend, the target (and model
// name) of a remote one, or the key template of precomputed lists (not
// their url, which may hold a password).
func backendWhere(b map[string]any) string {
	if p, ok := b["path"].(string); ok && p != "" {
		return p
	}
	if k, ok := b["key"].(string); ok && k != "" {
		return k
	}
	if t, ok := b["target"].(string); ok && t != "" {
		if name, ok := b["model_name"].(string); ok && name != "" {
			t += " " + name
			if v, ok := b["version"]; ok {
				t += "@" + cliValue(v)
			} else if l, ok := b["version_label"].(string); ok && l != "" {
				t += "@" + l
			}
		}
		return t
	}
	return ""
}

// metadataSummary is "k=v, k=v" in key order, cut to n runes.
func metadataSummary(md map[string]any, n int) string {
	parts := make([]string, 0, len(md))
	for _, k := range cli.SortedKeys(md) {
		parts = append(parts, k+"="+cliValue(md[k]))
	}
	return cli.Truncate(strings.Join(parts, ", "), n)
}

func runModelsShow(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("models show", "MODEL VERSION [--server URL] [--json]",
		"Shows one model version (GET /v1/models/MODEL/versions/VERSION): its backend, metadata and\n"+
			"feature spec. MODEL@VERSION works as one argument too.", stdout, stderr)
	model, version, code, ok := c.modelVersionArgs(args)
	if !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	v, err := cl.Version(context.Background(), model, version, client.RawBody(&raw))
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	backend := backendFields(v.Backend)
	tw := cli.NewTable(stdout)
	fmt.Fprintf(tw, "model:\t%s\n", v.Name)
	fmt.Fprintf(tw, "version:\t%s\n", v.Version)
	fmt.Fprintf(tw, "arm:\t%s\n", v.Arm)
	fmt.Fprintf(tw, "created:\t%s\n", cliTime(v.CreatedAt))
	tw.Flush()
	fmt.Fprintln(stdout, "backend:")
	tw = cli.NewTable(stdout)
	if t, ok := backend["type"]; ok {
		fmt.Fprintf(tw, "  type:\t%s\n", cliValue(t))
	}
	for _, k := range cli.SortedKeys(backend) {
		if k != "type" {
			fmt.Fprintf(tw, "  %s:\t%s\n", k, cliValue(backend[k]))
		}
	}
	tw.Flush()
	if len(v.Metadata) == 0 {
		fmt.Fprintln(stdout, "metadata: none")
	} else {
		fmt.Fprintln(stdout, "metadata:")
		tw = cli.NewTable(stdout)
		for _, k := range cli.SortedKeys(v.Metadata) {
			fmt.Fprintf(tw, "  %s:\t%s\n", k, cli.OneLine(cliValue(v.Metadata[k])))
		}
		tw.Flush()
	}
	spec := bytes.TrimSpace(v.Features)
	if len(spec) == 0 || string(spec) == "null" || string(spec) == "{}" {
		if v.Backend.Type == embedded.Type {
			fmt.Fprintln(stdout, "features: none (an embedded version reads user_id and features.recent_items)")
		} else {
			fmt.Fprintln(stdout, "features: none")
		}
		return cli.ExitOK
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, spec, "  ", "  "); err != nil {
		pretty.Reset()
		pretty.Write(spec)
	}
	fmt.Fprintf(stdout, "features:\n  %s\n", pretty.String())
	return cli.ExitOK
}

// registerFlags are the flags of `models register`.
type registerFlags struct {
	file         string
	embedded     string
	tfserving    string
	modelName    string
	tfVersion    int64
	versionLabel string
	signature    string
	timeoutMS    int
	scoresOutput string
	idsOutput    string
	features     string
	metadata     metadataFlag
	set          func(name string) bool // was the flag given?
}

// metadataFlag collects repeated --metadata k=v (a string) or k:=JSON (any
// JSON value, e.g. offline_recall_at_10:=0.21).
type metadataFlag struct {
	vals map[string]json.RawMessage
}

func (m *metadataFlag) String() string { return "" }

func (m *metadataFlag) Set(s string) error {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return fmt.Errorf("want KEY=VALUE or KEY:=JSON, got %q", s)
	}
	key, val := s[:i], s[i+1:]
	var raw json.RawMessage
	if strings.HasSuffix(key, ":") {
		key = key[:len(key)-1]
		if !json.Valid([]byte(val)) {
			return fmt.Errorf("%s:=%s: not a JSON value (quote strings or use KEY=VALUE)", key, val)
		}
		raw = json.RawMessage(val)
	} else {
		raw, _ = json.Marshal(val)
	}
	if key == "" {
		return fmt.Errorf("empty key in %q", s)
	}
	if m.vals == nil {
		m.vals = map[string]json.RawMessage{}
	}
	m.vals[key] = raw // the last one wins
	return nil
}

// buildVersionBody builds the PUT body of `models register` from its flags:
// a typed body, or, with --file, the file's JSON (raw) so that the server
// judges every field in it. Its errors are usage errors; warn receives
// notes for the user.
func buildVersionBody(f *registerFlags, warn func(string)) (body *registry.VersionBody, raw json.RawMessage, err error) {
	sources := 0
	for _, n := range []string{"file", "embedded", "tfserving"} {
		if f.set(n) {
			sources++
		}
	}
	if sources != 1 {
		return nil, nil, fmt.Errorf("give exactly one of --file, --embedded or --tfserving")
	}
	if !f.set("tfserving") {
		for _, n := range []string{"model-name", "tf-version", "version-label", "signature", "scores-output", "ids-output"} {
			if f.set(n) {
				return nil, nil, fmt.Errorf("--%s goes with --tfserving", n)
			}
		}
	}
	var features json.RawMessage
	if f.set("features") {
		spec, err := readJSONFile("features", f.features)
		if err != nil {
			return nil, nil, err
		}
		features = spec
	}
	if f.set("file") {
		if f.set("timeout-ms") {
			return nil, nil, fmt.Errorf("--timeout-ms cannot be combined with --file: set backend.timeout_ms in the file")
		}
		raw, err := versionBodyFromFile(f, features, warn)
		return nil, raw, err
	}
	var b *registry.BackendSpec
	if f.set("embedded") {
		if f.embedded == "" {
			return nil, nil, fmt.Errorf("--embedded needs a directory")
		}
		abs, err := filepath.Abs(f.embedded)
		if err != nil {
			return nil, nil, fmt.Errorf("--embedded %s: %v", f.embedded, err)
		}
		spec := &embedded.Spec{Path: abs}
		if f.set("timeout-ms") {
			spec.TimeoutMS = f.timeoutMS // 0, the server's default, is sent as no value
		}
		b = &registry.BackendSpec{Type: embedded.Type, Config: spec}
	} else {
		if f.tfserving == "" {
			return nil, nil, fmt.Errorf("--tfserving needs a HOST:PORT target")
		}
		if f.modelName == "" {
			return nil, nil, fmt.Errorf("--tfserving needs --model-name (the model's name in TF Serving)")
		}
		if f.set("tf-version") && f.set("version-label") {
			return nil, nil, fmt.Errorf("give --tf-version or --version-label, not both")
		}
		spec := &tfserving.Spec{Target: f.tfserving, ModelName: f.modelName, VersionLabel: f.versionLabel, SignatureName: f.signature}
		if f.set("timeout-ms") {
			spec.TimeoutMS = f.timeoutMS
		}
		if f.set("tf-version") {
			v := f.tfVersion
			spec.Version = &v
		}
		if f.set("ids-output") && !f.set("scores-output") {
			return nil, nil, fmt.Errorf("--ids-output needs --scores-output")
		}
		if f.set("scores-output") {
			spec.Outputs = &tfserving.Outputs{Scores: f.scoresOutput}
			if f.set("ids-output") {
				spec.Outputs.IDs = f.idsOutput
			}
		}
		b = &registry.BackendSpec{Type: tfserving.Type, Config: spec}
	}
	body = &registry.VersionBody{Backend: b, Features: features}
	if len(f.metadata.vals) > 0 {
		body.Metadata = make(map[string]any, len(f.metadata.vals))
		for k, v := range f.metadata.vals {
			body.Metadata[k] = v // a json.RawMessage: sent as written
		}
	}
	return body, nil, nil
}

// versionBodyFromFile reads --file, then sets "features" from --features
// and adds the --metadata keys (which win over the file's).
func versionBodyFromFile(f *registerFlags, features json.RawMessage, warn func(string)) ([]byte, error) {
	raw, err := readJSONFile("file", f.file)
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		return nil, fmt.Errorf("--file %s: the body must be a JSON object", f.file)
	}
	var backend struct {
		Type string `json:"type"`
		Path string `json:"path"`
	}
	if json.Unmarshal(body["backend"], &backend) == nil && backend.Type == embedded.Type &&
		backend.Path != "" && !filepath.IsAbs(backend.Path) {
		warn(fmt.Sprintf("note: backend.path %q in %s is relative: the server resolves it against its own working directory, not this one", backend.Path, f.file))
	}
	if features != nil {
		body["features"] = features
	}
	if len(f.metadata.vals) > 0 {
		md := map[string]json.RawMessage{}
		if m, ok := body["metadata"]; ok && string(bytes.TrimSpace(m)) != "null" {
			if err := json.Unmarshal(m, &md); err != nil {
				return nil, fmt.Errorf("--file %s: metadata must be a JSON object to add --metadata to it", f.file)
			}
		}
		for k, v := range f.metadata.vals {
			md[k] = v
		}
		body["metadata"], _ = json.Marshal(md)
	}
	if raw, err = json.Marshal(body); err != nil {
		return nil, err
	}
	return raw, nil
}

func runModelsRegister(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("models register",
		"MODEL VERSION (--file BODY.json | --embedded PATH | --tfserving TARGET --model-name NAME\n"+
			"         [--tf-version N | --version-label L] [--signature S] [--scores-output A] [--ids-output B])\n"+
			"         [--timeout-ms N] [--features SPEC.json] [--metadata KEY=VALUE]... [--server URL] [--json]",
		"Registers a model version (PUT /v1/models/MODEL/versions/VERSION): 201 \"registered mf@3\" for a\n"+
			"new one, 200 \"replaced mf@3\" when it replaces a version no endpoint uses (one in use is a 409:\n"+
			"register a new version instead). The server loads and validates the version before it\n"+
			"stores anything.\n\n"+
			"The body is --file's (the API's model version body), or is built from --embedded or --tfserving\n"+
			"and the other flags; --features and --metadata apply to both. \"-\" as a file is standard input.\n\n"+
			"--embedded PATH is a directory the *server* reads (embedding/v1). A relative PATH is made\n"+
			"absolute here, against this command's working directory, before it is sent: the server would\n"+
			"resolve a relative path against its own working directory. A path inside --file is sent as\n"+
			"written. So run this on the gateway's machine, or give a path that is valid there.\n\n"+
			"--metadata KEY=VALUE sets a string; KEY:=JSON sets any JSON value (offline_recall_at_10:=0.21).", stdout, stderr)
	f := &registerFlags{set: c.IsSet}
	c.Flags.StringVar(&f.file, "file", "", "the whole PUT body, a JSON file")
	c.Placeholder("file", "BODY.json")
	c.Flags.StringVar(&f.embedded, "embedded", "", "embedded embedding/v1 model directory (made absolute on this side)")
	c.Placeholder("embedded", "PATH")
	c.Flags.StringVar(&f.tfserving, "tfserving", "", "TF Serving gRPC target")
	c.Placeholder("tfserving", "HOST:PORT")
	c.Flags.StringVar(&f.modelName, "model-name", "", "the model's name in TF Serving (with --tfserving)")
	c.Placeholder("model-name", "NAME")
	c.Flags.Int64Var(&f.tfVersion, "tf-version", 0, "TF Serving model version (else --version-label, else the latest)")
	c.Placeholder("tf-version", "N")
	c.Flags.StringVar(&f.versionLabel, "version-label", "", "TF Serving version label, e.g. canary")
	c.Placeholder("version-label", "L")
	c.Flags.StringVar(&f.signature, "signature", "", "signature name (server default serving_default)")
	c.Placeholder("signature", "S")
	c.Flags.IntVar(&f.timeoutMS, "timeout-ms", 0, "deadline of each model call in ms (server default 1000)")
	c.Placeholder("timeout-ms", "N")
	c.Flags.StringVar(&f.scoresOutput, "scores-output", "", "signature output alias holding the scores")
	c.Placeholder("scores-output", "A")
	c.Flags.StringVar(&f.idsOutput, "ids-output", "", "signature output alias holding item ids (the model's own ranking)")
	c.Placeholder("ids-output", "B")
	c.Flags.StringVar(&f.features, "features", "", "feature spec, a JSON file ({\"inputs\": {…}})")
	c.Placeholder("features", "SPEC.json")
	c.Flags.Var(&f.metadata, "metadata", "metadata entry; repeatable")
	c.Placeholder("metadata", "KEY=VALUE")
	model, version, code, ok := c.modelVersionArgs(args)
	if !ok {
		return code
	}
	body, rawBody, err := buildVersionBody(f, func(s string) { fmt.Fprintln(stderr, s) })
	if err != nil {
		return c.UsageError("%v", err)
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var (
		raw     []byte
		v       *registry.ModelVersion
		created bool
	)
	if body != nil {
		v, created, err = cl.PutVersion(context.Background(), model, version, *body, client.RawBody(&raw))
	} else {
		v, created, err = cl.PutVersionJSON(context.Background(), model, version, rawBody, client.RawBody(&raw))
	}
	if code, ok := c.done(raw, err); !ok {
		return code
	}
	arm := v.Arm
	if arm == "" {
		arm = model + "@" + version
	}
	verb := "replaced"
	if created {
		verb = "registered"
	}
	backend := backendFields(v.Backend)
	where := backendWhere(backend)
	if where != "" {
		where = " (" + cliValue(backend["type"]) + " " + where + ")"
	}
	fmt.Fprintf(stdout, "%s %s%s\n", verb, arm, where)
	return cli.ExitOK
}

func runModelsDelete(args []string, stdout, stderr io.Writer) int {
	c := newCLICmd("models delete", "MODEL VERSION [--server URL] [--json]",
		"Deletes a model version (DELETE /v1/models/MODEL/versions/VERSION). A version an endpoint uses\n"+
			"as an arm or fallback cannot be deleted (409 version_in_use): remove it from the endpoint\n"+
			"first (modelgate endpoints apply). With --json nothing is printed (the answer is 204 No Content).", stdout, stderr)
	model, version, code, ok := c.modelVersionArgs(args)
	if !ok {
		return code
	}
	cl, code, ok := c.client()
	if !ok {
		return code
	}
	var raw []byte
	if err := cl.DeleteVersion(context.Background(), model, version, client.RawBody(&raw)); err != nil {
		return c.fail(err)
	} else if c.json {
		if len(raw) > 0 {
			return c.printRaw(raw)
		}
		return cli.ExitOK
	}
	fmt.Fprintf(stdout, "deleted %s@%s\n", model, version)
	return cli.ExitOK
}
