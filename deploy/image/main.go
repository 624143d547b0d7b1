// Command image builds Hindsight's container image without a container engine: it
// cross-compiles cmd/hindsight for each platform with the go command (static, -trimpath,
// no build ID) and assembles a minimal OCI image per platform with go-containerregistry:
// the binary, CA certificates, a passwd entry for the non-root user, and nothing else (no
// shell, no package manager). Every file time is the commit's time, so two builds of one
// commit give one digest.
//
// Output, in -out:
//
//	oci/                          an OCI image layout holding the multi-platform index
//	                              (crane push oci/ <ref>, skopeo copy oci:oci <ref>)
//	hindsight-linux-<arch>.tar    one image per platform as a docker tarball (docker load -i)
//	digest                        the index digest
//
// Usage: go run . -repo ../.. -out ../../_output/image (make image does this).
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image's fixed facts, defined once.
const (
	// uid and gid of the user the image runs as: distroless' "nonroot".
	uid, gid = 65532, 65532
	// binary is the entrypoint's path in the image.
	binary = "/hindsight"
	// caFile is where Go's crypto/x509 looks first on Linux.
	caFile = "/etc/ssl/certs/ca-certificates.crt"
	// dataDir is the default --storage-path mount point, owned by the user so that an
	// emptyDir or a volume without fsGroup is writable.
	dataDir = "/data"
	// source is the project's repository, for org.opencontainers.image.source.
	source = "https://github.com/hindsight-metrics/hindsight"
	// DefaultRepository names the image in docker tarballs (docker load); users push it
	// to their own registry.
	DefaultRepository = "hindsight"
)

// DefaultPlatforms are the platforms an image is built for.
var DefaultPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Config says what to build.
type Config struct {
	Repo      string        // the project's root: where go build runs
	Version   string        // main.version and org.opencontainers.image.version
	Revision  string        // the commit, org.opencontainers.image.revision
	Created   time.Time     // the commit's time: every file's time and the image's creation time
	Platforms []v1.Platform // DefaultPlatforms when empty
	Work      string        // a directory for the binaries
	Go        string        // the go command; "go" when empty
}

func main() {
	repo := flag.String("repo", "../..", "the project's root")
	out := flag.String("out", "../../_output/image", "the output directory")
	version := flag.String("version", "", "the version (default: git describe --tags --always --dirty)")
	flag.Parse()
	if err := run(context.Background(), *repo, *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, repo, out, version string) error {
	cfg, err := configFromGit(ctx, repo, version)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "hindsight-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cfg.Work = work
	idx, err := Build(ctx, cfg)
	if err != nil {
		return err
	}
	d, err := Write(idx, out, cfg.Version)
	if err != nil {
		return err
	}
	fmt.Printf("built %s %s (%s)\n", filepath.Join(out, "oci"), d, platformList(cfg.Platforms))
	return nil
}

// configFromGit fills a Config from the repository's HEAD.
func configFromGit(ctx context.Context, repo, version string) (Config, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = repo
		b, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	rev, err := git("rev-parse", "HEAD")
	if err != nil {
		return Config{}, err
	}
	ct, err := git("log", "-1", "--format=%ct")
	if err != nil {
		return Config{}, err
	}
	secs, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return Config{}, fmt.Errorf("commit time %q: %w", ct, err)
	}
	if version == "" {
		if version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return Config{}, err
		}
	}
	return Config{Repo: repo, Version: version, Revision: rev, Created: time.Unix(secs, 0).UTC()}, nil
}

// Build compiles the binary for each platform and returns the multi-platform index.
func Build(ctx context.Context, cfg Config) (v1.ImageIndex, error) {
	if len(cfg.Platforms) == 0 {
		cfg.Platforms = DefaultPlatforms
	}
	base, err := baseLayer(cfg.Created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range cfg.Platforms {
		bin, err := compile(ctx, cfg, p)
		if err != nil {
			return nil, err
		}
		img, err := platformImage(cfg, p, base, bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}},
		})
	}
	return idx, nil
}

// compile builds a static cmd/hindsight for p and returns its path.
func compile(ctx context.Context, cfg Config, p v1.Platform) (string, error) {
	out := filepath.Join(cfg.Work, "hindsight-"+p.OS+"-"+p.Architecture)
	goCmd := cfg.Go
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X main.version="+cfg.Version, "-o", out, "./cmd/hindsight")
	cmd.Dir = cfg.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && p.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build for %s: %w\n%s", p, err, b)
	}
	return out, nil
}

// platformImage is the base layer, the binary's layer and the image config.
func platformImage(cfg Config, p v1.Platform, base v1.Layer, bin string) (v1.Image, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	app, err := layer(cfg.Created, []file{{path: binary, mode: 0o755, data: b}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, base, app)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: cfg.Created}
	cf.Author = source
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, gid),
		Entrypoint: []string{binary},
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=" + caFile},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "hindsight",
			"org.opencontainers.image.description": "A drop-in replacement for Kubernetes metrics-server that keeps every sample: metrics.k8s.io, a history API and a Prometheus-compatible API",
			"org.opencontainers.image.source":      source,
			"org.opencontainers.image.url":         source,
			"org.opencontainers.image.version":     cfg.Version,
			"org.opencontainers.image.revision":    cfg.Revision,
			"org.opencontainers.image.created":     cfg.Created.Format(time.RFC3339),
		},
	}
	// The history is what makes a build reproducible too: one entry per layer, dated.
	cf.History = []v1.History{
		{Created: v1.Time{Time: cfg.Created}, CreatedBy: "hindsight image: CA certificates, passwd, " + dataDir},
		{Created: v1.Time{Time: cfg.Created}, CreatedBy: "hindsight image: " + binary + " " + cfg.Version},
	}
	return mutate.ConfigFile(img, cf)
}

// file is one entry of a layer: a directory when dir is set, else a regular file.
type file struct {
	path     string
	mode     int64 // permission bits
	dir      bool
	data     []byte
	uid, gid int
}

// baseLayer holds what every platform shares: CA certificates, passwd and group with the
// non-root user, and the data directory it owns.
func baseLayer(created time.Time) (v1.Layer, error) {
	ca, err := caBundle()
	if err != nil {
		return nil, err
	}
	return layer(created, []file{
		{path: "/etc", dir: true, mode: 0o755},
		{path: "/etc/group", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", gid)},
		{path: "/etc/passwd", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, gid)},
		{path: "/etc/ssl", dir: true, mode: 0o755},
		{path: "/etc/ssl/certs", dir: true, mode: 0o755},
		{path: caFile, mode: 0o644, data: ca},
		{path: dataDir, dir: true, mode: 0o700, uid: uid, gid: gid},
		{path: "/home", dir: true, mode: 0o755},
		{path: "/home/nonroot", dir: true, mode: 0o700, uid: uid, gid: gid},
		{path: "/tmp", dir: true, mode: 0o1777},
	})
}

// caBundle is the Mozilla root set that golang.org/x/crypto/x509roots/fallback pins, as
// PEM. Roots that carry a constraint (a distrust date) are left out: a PEM file cannot
// say it.
func caBundle() ([]byte, error) {
	var b bytes.Buffer
	n := 0
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, errors.New("no CA certificates in x509roots/fallback")
	}
	return b.Bytes(), nil
}

// layer is a tar of files, sorted by path, every time set to created.
func layer(created time.Time, files []file) (v1.Layer, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:    strings.TrimPrefix(f.path, "/"),
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Write writes idx as an OCI layout in out/oci, each platform's image as a docker tarball
// and the index digest in out/digest, replacing what an earlier build wrote there.
func Write(idx v1.ImageIndex, out, version string) (v1.Hash, error) {
	d, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.RemoveAll(filepath.Join(out, "oci")); err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(filepath.Join(out, "oci"), empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": version})); err != nil {
		return v1.Hash{}, err
	}
	tag, err := name.NewTag(DefaultRepository+":"+tagSafe(version), name.WithDefaultRegistry(""))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("tag for version %q: %w", version, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			return v1.Hash{}, err
		}
		f := filepath.Join(out, "hindsight-"+m.Platform.OS+"-"+m.Platform.Architecture+".tar")
		if err := tarball.WriteToFile(f, tag, img); err != nil {
			return v1.Hash{}, err
		}
	}
	return d, os.WriteFile(filepath.Join(out, "digest"), []byte(d.String()+"\n"), 0o644)
}

// tagSafe makes a version a valid tag: [A-Za-z0-9_.-], at most 128 characters.
func tagSafe(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), 128)])
}

func platformList(ps []v1.Platform) string {
	if len(ps) == 0 {
		ps = DefaultPlatforms
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
