package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/modelgate/modelgate/backend/onnx"
	"github.com/modelgate/modelgate/config"
	"github.com/modelgate/modelgate/internal/testenv"
)

const (
	dockerfile   = "../../Dockerfile"
	repoRoot     = "../.."
	ortLibrary   = "libonnxruntime.so.1"
	ortScript    = "../../scripts/onnxruntime.sh"
	demoSource   = "examples/demo/models"
	buildPackage = "./cmd/modelgate"
)

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ENV, …
	args string
	line int
}

// stage is one FROM and the instructions up to the next.
type stage struct {
	image, name string
	instrs      []instruction
}

// parseDockerfile reads a Dockerfile into its stages: comments and blank
// lines dropped, lines ending in a backslash joined to the next (comment
// lines inside a continuation dropped, as Docker does). Parser directives
// and heredocs are not supported, and the Dockerfile uses neither.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("Dockerfile:%d: FROM %s: want IMAGE [AS NAME]", start, in.args)
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before the first FROM", start, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	continued := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && !continued) {
			continue
		}
		if !continued {
			start = n
		}
		body, more := strings.CutSuffix(line, `\`)
		cur.WriteString(body + " ")
		continued = more
		if !more {
			flush()
		}
	}
	if continued {
		t.Fatal("Dockerfile ends in a continuation")
	}
	return stages
}

// all returns the arguments of every instruction cmd of s.
func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

var envPairRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)`)

// vars returns the KEY=VALUE pairs of the stage's ENV (or ARG)
// instructions, quotes removed.
func (s stage) vars(cmd string) map[string]string {
	out := map[string]string{}
	for _, args := range s.all(cmd) {
		for _, m := range envPairRE.FindAllStringSubmatch(args, -1) {
			v := m[2]
			if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
				v = uq
			}
			out[m[1]] = v
		}
	}
	return out
}

// buildStage is the stage that runs `go build`, and that RUN's arguments.
func buildStage(t *testing.T, stages []stage) (stage, string) {
	t.Helper()
	for _, s := range stages {
		for _, run := range s.all("RUN") {
			if strings.Contains(run, "go build") {
				return s, run
			}
		}
	}
	t.Fatal("no stage runs go build")
	return stage{}, ""
}

// stageNamed is the stage called name.
func stageNamed(t *testing.T, stages []stage, name string) stage {
	t.Helper()
	for _, s := range stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no stage %q", name)
	return stage{}
}

// copyInstr is a COPY of one source: from a stage ("" for the build
// context) to a destination.
type copyInstr struct{ from, src, dst string }

// copies returns the stage's COPY instructions of one source each.
func (s stage) copies() []copyInstr {
	var out []copyInstr
	for _, args := range s.all("COPY") {
		var c copyInstr
		var rest []string
		for _, f := range strings.Fields(args) {
			if v, ok := strings.CutPrefix(f, "--from="); ok {
				c.from = v
			} else if !strings.HasPrefix(f, "--") {
				rest = append(rest, f)
			}
		}
		if len(rest) == 2 {
			c.src, c.dst = rest[0], rest[1]
			out = append(out, c)
		}
	}
	return out
}

// imageTag splits an image reference into its name and tag.
func imageTag(ref string) (name, tag string) {
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	final := stages[len(stages)-1]
	build, run := buildStage(t, stages)
	finalEnv := final.vars("ENV")

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"multi-stage", func(t *testing.T) {
			if len(stages) < 3 {
				t.Fatalf("%d stages, want a build stage, an ONNX Runtime stage and the final image", len(stages))
			}
			if build.image == final.image {
				t.Error("the final image is the build image")
			}
		}},
		{"pinned images", func(t *testing.T) {
			for _, s := range stages {
				_, tag := imageTag(s.image)
				if strings.Contains(s.image, "$") || tag == "" || tag == "latest" {
					t.Errorf("FROM %s: want a fixed tag, not latest", s.image)
				}
			}
		}},
		{"Go version of go.mod", func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			mf, err := modfile.ParseLax("go.mod", raw, nil)
			if err != nil {
				t.Fatal(err)
			}
			name, tag := imageTag(build.image)
			if name != "golang" || !strings.HasPrefix(tag, mf.Go.Version+"-") {
				t.Errorf("build stage FROM %s, want golang:%s-…", build.image, mf.Go.Version)
			}
		}},
		{"same glibc in build and final stages", func(t *testing.T) {
			// A binary linked against a newer glibc than the final base's
			// does not start.
			_, tag := imageTag(build.image)
			suite := tag[strings.LastIndex(tag, "-")+1:]
			debian := map[string]string{"bookworm": "debian12", "trixie": "debian13"}[suite]
			name, _ := imageTag(final.image)
			if debian == "" || !strings.HasSuffix(name, "/cc-"+debian) {
				t.Errorf("build stage on Debian %q, final image %s: want distroless cc of the same release", suite, final.image)
			}
		}},
		{"cgo", func(t *testing.T) {
			// The onnx backend's package does not build without cgo.
			if v := build.vars("ENV")["CGO_ENABLED"]; v != "1" {
				t.Errorf("build stage CGO_ENABLED=%q, want 1", v)
			}
			if !strings.Contains(run, buildPackage) {
				t.Errorf("RUN %s: does not build %s", run, buildPackage)
			}
		}},
		{"non-root user", func(t *testing.T) {
			users := final.all("USER")
			if len(users) != 1 {
				t.Fatalf("final stage USER %v, want one", users)
			}
			for _, id := range strings.Split(users[0], ":") {
				n, err := strconv.Atoi(id)
				if err != nil || n == 0 {
					t.Errorf("USER %s: want a numeric non-root UID:GID (Kubernetes checks runAsNonRoot by number)", users[0])
				}
			}
		}},
		{"ports match the Service", func(t *testing.T) {
			var exposed []int32
			for _, e := range final.all("EXPOSE") {
				for _, p := range strings.Fields(e) {
					n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
					if err != nil {
						t.Fatalf("EXPOSE %s: %v", p, err)
					}
					exposed = append(exposed, int32(n))
				}
			}
			var svc []int32
			for _, p := range build1(t).service(t).Spec.Ports {
				svc = append(svc, p.Port)
			}
			slices.Sort(exposed)
			slices.Sort(svc)
			if !slices.Equal(exposed, svc) {
				t.Errorf("EXPOSE %v, the Service's ports %v", exposed, svc)
			}
			for name, port := range map[string]int32{"MODELGATE_HTTP_ADDR": httpPort, "MODELGATE_GRPC_ADDR": grpcPort} {
				if !strings.HasSuffix(finalEnv[name], fmt.Sprintf(":%d", port)) {
					t.Errorf("ENV %s=%q, want port %d", name, finalEnv[name], port)
				}
			}
		}},
		{"entrypoint", func(t *testing.T) {
			eps := final.all("ENTRYPOINT")
			var ep []string
			if len(eps) != 1 || json.Unmarshal([]byte(eps[0]), &ep) != nil || len(ep) != 1 {
				t.Fatalf("ENTRYPOINT %v: want the binary, in exec form", eps)
			}
			found := false
			for _, c := range final.copies() {
				found = found || (c.from == build.name && c.dst == ep[0] && filepath.Base(c.src) == "modelgate")
			}
			if !found {
				t.Errorf("ENTRYPOINT %s is not the binary copied from the build stage", ep[0])
			}
		}},
		{"ONNX Runtime", func(t *testing.T) {
			lib := finalEnv[onnx.EnvLibrary]
			if lib == "" || filepath.Base(lib) != ortLibrary {
				t.Fatalf("ENV %s=%q, want the path of %s", onnx.EnvLibrary, lib, ortLibrary)
			}
			var from string
			for _, c := range final.copies() {
				if c.dst == lib {
					from = c.from
				}
			}
			if from == "" {
				t.Fatalf("no COPY puts %s at %s", ortLibrary, lib)
			}
			// The same pinned version as `make onnxruntime`, checked.
			ort := stageNamed(t, stages, from)
			script, err := os.ReadFile(ortScript)
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`(?m)^VERSION=(\S+)$`).FindSubmatch(script)
			if m == nil {
				t.Fatalf("%s sets no VERSION", ortScript)
			}
			args := ort.vars("ARG")
			if args["ONNXRUNTIME_VERSION"] != string(m[1]) {
				t.Errorf("ONNXRUNTIME_VERSION %q, %s has %q", args["ONNXRUNTIME_VERSION"], ortScript, m[1])
			}
			if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(args["ONNXRUNTIME_SHA256"]) {
				t.Errorf("ONNXRUNTIME_SHA256 %q: want a SHA-256", args["ONNXRUNTIME_SHA256"])
			}
			runs := strings.Join(ort.all("RUN"), "\n")
			if !strings.Contains(runs, "sha256sum -c") || !strings.Contains(runs, "npm pack") {
				t.Errorf("the %s stage does not fetch the npm package and check its checksum", from)
			}
		}},
		{"demo models where the manifests' config names them", func(t *testing.T) {
			found := false
			for _, c := range final.copies() {
				found = found || (c.from == "" && c.src == demoSource && c.dst == demoModels)
			}
			if !found {
				t.Errorf("no COPY %s %s", demoSource, demoModels)
			}
			if finalEnv[dataDirEnv] == "" {
				t.Errorf("ENV %s is not set", dataDirEnv)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

// build1 builds the single overlay: the image runs in both alike.
func build1(t *testing.T) *manifests {
	t.Helper()
	return build(t, filepath.Join(overlaysDir, overlays[0].name))
}

// TestImageBinary builds the binary the way the Dockerfile does (its build
// stage's environment and flags) and runs it as the image would: from a
// directory holding nothing else, with no environment but the image's ENV,
// the ONNX Runtime library and the demo models laid out as in the image, and
// the Kubernetes manifests' config. It must serve the demo with all its
// arms ready, and stop cleanly on SIGTERM.
func TestImageBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary with the image's flags (a cold build takes minutes)")
	}
	lib := onnx.LibraryPath("")
	if lib == "" {
		testenv.SkipOrFail(t, "ONNX Runtime library not found: run `make onnxruntime` (scripts/onnxruntime.sh) or set %s", onnx.EnvLibrary)
	}
	stages := parseDockerfile(t, dockerfile)
	final := stages[len(stages)-1]
	build, run := buildStage(t, stages)

	// go build with the stage's ENV and the RUN's -ldflags; its ARGs are
	// empty by default.
	ldflags := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(run)
	if ldflags == nil {
		t.Fatalf("RUN %s: no -ldflags \"…\"", run)
	}
	flags := regexp.MustCompile(`\$\{[A-Z_]+\}`).ReplaceAllString(ldflags[1], "")
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "modelgate")
	cmd := exec.Command("go", "build", "-ldflags", flags, "-o", bin, buildPackage)
	cmd.Dir = repoRoot
	cmd.Env = os.Environ()
	for k, v := range build.vars("ENV") {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build as the Dockerfile does: %v\n%s", err, out)
	}

	runBin := func(env []string, args ...string) string {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Dir = binDir
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("modelgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := runBin([]string{}, "version"); !strings.HasPrefix(out, "modelgate ") || !strings.Contains(out, "go:") {
		t.Errorf("modelgate version printed %q", out)
	}
	runBin([]string{}, "serve", "--help")

	// The image's layout under root.
	root := t.TempDir()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	place := func(src, dst string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs(src), filepath.Join(root, dst)); err != nil {
			t.Fatal(err)
		}
	}
	imageEnv := final.vars("ENV")
	place(lib, imageEnv[onnx.EnvLibrary])
	place(filepath.Join(repoRoot, demoSource), demoModels)
	cm := build1(t).configMaps[0]
	raw := strings.ReplaceAll(cm.Data[configKey], demoModels, filepath.Join(root, demoModels))
	cfgPath := filepath.Join(root, configPath)
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for k, v := range imageEnv {
		switch k {
		case "MODELGATE_HTTP_ADDR", "MODELGATE_GRPC_ADDR":
			v = "127.0.0.1:0" // all addresses in the image; free ports here
		default:
			if strings.HasPrefix(v, "/") {
				v = filepath.Join(root, v)
			}
		}
		env = append(env, k+"="+v)
	}

	srv := exec.Command(bin, "serve", "--config", cfgPath)
	srv.Dir = binDir
	srv.Env = env
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }() // joined below or in Cleanup
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		<-exited
	})
	lines := bufio.NewScanner(stdout)
	var base string
	for lines.Scan() {
		if m := regexp.MustCompile(`HTTP on (http://[0-9.:]+)`).FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatalf("serve printed no address\n%s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	get := func(path string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(healthzPath); code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", healthzPath, code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(readyzPath)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s, want every arm ready (the onnx arm needs the library)\n%s", readyzPath, code, body, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// API keys are on: the recommend endpoint is closed without one.
	if code, _ := get("/v1/endpoints/home/report"); code != http.StatusUnauthorized {
		t.Errorf("GET a report without a key: %d, want 401", code)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for Cleanup
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(cfg.Limits.ShutdownTimeout + 5*time.Second):
		t.Errorf("still running %v after SIGTERM, past limits.shutdown_timeout", cfg.Limits.ShutdownTimeout+5*time.Second)
	}
}
