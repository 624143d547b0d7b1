// Module image builds Hindsight's OCI image without a container engine (make image): the
// binary is cross-compiled by the go command and the image assembled with
// go-containerregistry. It is its own module so that the server's go.mod stays free of
// the image tooling.
module github.com/hindsight-metrics/hindsight/deploy/image

go 1.26.0

require (
	github.com/google/go-containerregistry v0.22.1
	golang.org/x/crypto/x509roots/fallback v0.0.0-20261030153154-30a33513ff6d
)

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
