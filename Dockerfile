# Hindsight's image for users who build with a container engine. `make image` builds the
# same image without one (deploy/image: linux/amd64 and linux/arm64, reproducible digest).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t hindsight .
#
# A static binary on distroless' static image: non-root (65532), no shell, CA certificates.
FROM golang:1.26 AS build
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hindsight ./cmd/hindsight \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="hindsight" \
      org.opencontainers.image.description="A drop-in replacement for Kubernetes metrics-server that keeps every sample: metrics.k8s.io, a history API and a Prometheus-compatible API" \
      org.opencontainers.image.source="https://github.com/hindsight-metrics/hindsight"
COPY --from=build /out/hindsight /hindsight
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENTRYPOINT ["/hindsight"]
