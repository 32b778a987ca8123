# The modelgate container image: the gateway, ONNX Runtime's library and the
# bundled demo's models, on a distroless base with glibc and libstdc++,
# running as a non-root user. README, "Container image":
#
#   docker build -t modelgate:dev .
#
# The binary needs cgo: the onnx backend loads ONNX Runtime's shared library
# at run time through dlopen (github.com/yalue/onnxruntime_go), so it links
# against glibc, and the library itself needs libstdc++. The build stage is
# Debian 12 (bookworm) like the final base, so both have the same glibc.

# The Go version of go.mod.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=1 GOFLAGS="-trimpath -buildvcs=false"
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# What `modelgate version` prints; .git is not in the build context, so pass
# them: --build-arg REVISION=$(git rev-parse HEAD)
# --build-arg REVISION_TIME=$(git log -1 --format=%cI)
ARG REVISION=""
ARG REVISION_TIME=""
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.revision=${REVISION} -X main.revisionTime=${REVISION_TIME}" \
      -o /out/modelgate ./cmd/modelgate && \
    mkdir -p /out/data

# ONNX Runtime's shared library, as scripts/onnxruntime.sh (make onnxruntime)
# fetches it: from the npm package onnxruntime-node, pinned, its tarball
# checked against the SHA-256 below before anything is extracted.
FROM node:22.12.0-bookworm-slim AS onnxruntime
ARG ONNXRUNTIME_VERSION=1.30.0
ARG ONNXRUNTIME_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ARG TARGETARCH
WORKDIR /tmp/ort
RUN case "${TARGETARCH:-amd64}" in \
      amd64) arch=x64 ;; \
      arm64) arch=arm64 ;; \
      *) echo "no onnxruntime-node library for ${TARGETARCH}" >&2; exit 1 ;; \
    esac && \
    npm pack --silent "onnxruntime-node@${ONNXRUNTIME_VERSION}" >/dev/null && \
    echo "${ONNXRUNTIME_SHA256}  onnxruntime-node-${ONNXRUNTIME_VERSION}.tgz" | sha256sum -c - && \
    tar -xzf "onnxruntime-node-${ONNXRUNTIME_VERSION}.tgz" "package/bin/napi-v6/linux/${arch}/libonnxruntime.so.1" && \
    mkdir -p /out && \
    install -m 0644 "package/bin/napi-v6/linux/${arch}/libonnxruntime.so.1" /out/libonnxruntime.so.1

# glibc, libstdc++ and libgcc_s, no shell; user nonroot is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/modelgate /usr/local/bin/modelgate
COPY --from=onnxruntime /out/libonnxruntime.so.1 /opt/onnxruntime/libonnxruntime.so.1
# The bundled demo (examples/demo): its config serves it as is, and the
# Kubernetes manifests' config (deploy/kubernetes/base/config.yaml) names
# these models by their absolute paths.
COPY examples/demo/config.yaml /opt/modelgate/demo/config.yaml
COPY examples/demo/models /opt/modelgate/demo/models
COPY --from=build --chown=65532:65532 /out/data /var/lib/modelgate
ENV MODELGATE_ONNXRUNTIME_LIB=/opt/onnxruntime/libonnxruntime.so.1 \
    MODELGATE_HTTP_ADDR=0.0.0.0:8080 \
    MODELGATE_GRPC_ADDR=0.0.0.0:9090 \
    MODELGATE_DATA_DIR=/var/lib/modelgate
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/modelgate"]
# Listening on all addresses needs API keys (auth: {mode: keys}) or
# --insecure: with the demo's config, add --insecure to try it locally.
CMD ["serve", "--config", "/opt/modelgate/demo/config.yaml"]
