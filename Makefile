# modelgate — build, run, test.
GO            ?= go
BIN           := bin/modelgate
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOBIN         ?= $(shell $(GO) env GOPATH)/bin
FUZZTIME      ?= 10s

# What `modelgate version` prints when the toolchain does not stamp the git
# revision itself (in a git worktree, or with GOFLAGS=-buildvcs=false).
# Recursive (=): git runs only when a build does.
VCS_LDFLAGS    = $(shell git rev-parse HEAD >/dev/null 2>&1 && \
	echo "-X main.revision=$$(git rev-parse HEAD)" \
	     "-X main.revisionTime=$$(git log -1 --format=%cI)" \
	     "-X main.revisionModified=$$(test -z "$$(git status --porcelain)" && echo false || echo true)")

.PHONY: build run test test-short bench bench-e2e bench-e2e-short lint proto fuzz demo-traffic demo-data screenshot redis-demo onnxruntime vulncheck clean

build:
	@echo "make build: $(BIN); the first build downloads and compiles the dependencies and takes a few minutes, later ones seconds" >&2
	$(GO) build -ldflags '$(VCS_LDFLAGS)' -o $(BIN) ./cmd/modelgate

## run: serve the bundled demo (endpoint "home") with the embedded store in ./data
run: build
	@if bash scripts/onnxruntime.sh; then config=examples/demo/config.yaml; else \
	  echo "make run: no ONNX Runtime library (see above), so serving examples/demo/config-embedded.yaml: the demo without its onnx arm nn@1" >&2; \
	  config=examples/demo/config-embedded.yaml; fi; \
	echo "$(BIN) serve --config $$config --data-dir ./data"; \
	exec $(BIN) serve --config $$config --data-dir ./data

## demo-traffic: simulated users against the gateway started by `make run`
demo-traffic: build
	$(BIN) demo-traffic --truth examples/demo/truth

## test: vet, then every test (with the race detector), package by package
## as each finishes (tools/testprogress); about 5 minutes on 2 cores. The
## per-package timeout is 30 minutes, not go test's 10: on a machine busy with
## other work the race-detected kustomize and gateway tests take over 10.
test:
	@echo "make test: go vet, then every test with the race detector: about 5 minutes on 2 cores (make test-short: about 1)" >&2
	$(GO) vet ./...
	$(GO) build -o bin/testprogress ./tools/testprogress
	bin/testprogress -race -count=1 -timeout 30m ./...

## test-short: the quick variant: no race detector, long simulations skipped
test-short:
	$(GO) build -o bin/testprogress ./tools/testprogress
	bin/testprogress -short -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bandit ./featurizer ./backend/... ./router ./api ./telemetry

## bench-e2e: what the gateway adds to a model call, over a bare HTTP→gRPC proxy and
## nginx grpc_pass, in one run on 127.0.0.1 (tools/benche2e; about 2 minutes)
bench-e2e: build
	$(GO) build -o bin/benche2e ./tools/benche2e
	bin/benche2e -modelgate $(BIN) $(BENCH_E2E_FLAGS)

## bench-e2e-short: the same, about 20 s: checks the harness works, not the numbers
bench-e2e-short: build
	$(GO) build -o bin/benche2e ./tools/benche2e
	bin/benche2e -modelgate $(BIN) -short $(BENCH_E2E_FLAGS)

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) install $(STATICCHECK)
	$(GOBIN)/staticcheck ./...

## fuzz: run each fuzz target for FUZZTIME (a duration, 10s, or a count of inputs, 2000x;
## with a duration Go 1.26 may fail a target with a bare "context deadline exceeded" and no
## failing input at the deadline on a busy machine: golang/go#75804, fixed in Go 1.27)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) ./fault
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecommend$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFeedback$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./predtoken
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./featurizer
	$(GO) test -run '^$$' -fuzz '^FuzzBuild$$' -fuzztime $(FUZZTIME) ./featurizer
	$(GO) test -run '^$$' -fuzz '^FuzzReadNpy$$' -fuzztime $(FUZZTIME) ./backend/embedded/npy
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) ./store/redisstore
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResponse$$' -fuzztime $(FUZZTIME) ./backend/tfserving
	$(GO) test -run '^$$' -fuzz '^FuzzEncodeRequest$$' -fuzztime $(FUZZTIME) ./backend/tfserving
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeList$$' -fuzztime $(FUZZTIME) ./backend/redislist
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSONAnswer$$' -fuzztime $(FUZZTIME) ./backend/oip
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRaw$$' -fuzztime $(FUZZTIME) ./backend/oip

## proto: regenerate the committed Go code from proto/ (needs protoc: apt-get install protobuf-compiler)
proto:
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GRPC)
	cd proto && PATH="$(GOBIN):$$PATH" protoc -I. \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		modelgate/v1/gateway.proto
	cd proto && PATH="$(GOBIN):$$PATH" protoc -I. \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		tensorflow/core/framework/types.proto tensorflow/core/framework/tensor_shape.proto \
		tensorflow/core/framework/tensor.proto \
		tensorflow/core/protobuf/error_codes.proto tensorflow/core/protobuf/meta_graph.proto \
		tensorflow_serving/util/status.proto \
		tensorflow_serving/apis/model.proto tensorflow_serving/apis/predict.proto \
		tensorflow_serving/apis/get_model_metadata.proto tensorflow_serving/apis/get_model_status.proto \
		tensorflow_serving/apis/prediction_service.proto tensorflow_serving/apis/model_service.proto
	cd proto && PATH="$(GOBIN):$$PATH" protoc -I. \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		inference/grpc_predict_v2.proto

## redis-demo: three replicas of the demo sharing a local redis-server (Ctrl-C stops)
redis-demo: build
	scripts/redis-demo.sh

## onnxruntime: put ONNX Runtime (npm onnxruntime-node 1.30.0, pinned) in .cache/onnxruntime/
onnxruntime:
	bash scripts/onnxruntime.sh

## vulncheck: govulncheck (pinned) with a database built from the golang.org/x/vulndb module
vulncheck:
	bash scripts/vulncheck.sh

## screenshot: the analysts' page in headless Chromium, written to docs/img/ui-endpoint.png
screenshot:
	MODELGATE_SCREENSHOT=$(CURDIR)/docs/img/ui-endpoint.png $(GO) test -count=1 -run '^TestAnalystPageInBrowser$$' ./gateway

## demo-data: regenerate examples/demo (deterministic)
demo-data:
	$(GO) run ./examples/demo/gen -out examples/demo

clean:
	rm -rf bin
