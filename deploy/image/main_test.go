package main

import (
	"archive/tar"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestBuild builds the image of this commit twice, through the OCI layout and docker
// tarballs it writes, and checks what the issue asks of it: one digest for both builds,
// both platforms, a non-root user and labels in the config, no shell, CA certificates
// that parse, and an entrypoint that runs --version when extracted.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles Hindsight twice")
	}
	ctx := context.Background()
	cfg, err := configFromGit(ctx, "../..", "v0.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	var digests [2]v1.Hash
	out := [2]string{t.TempDir(), t.TempDir()}
	for i := range 2 {
		c := cfg
		c.Work = t.TempDir()
		idx, err := Build(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if digests[i], err = Write(idx, out[i], c.Version); err != nil {
			t.Fatal(err)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of one commit: digests %s and %s", digests[0], digests[1])
	}
	b, err := os.ReadFile(filepath.Join(out[0], "digest"))
	if err != nil || strings.TrimSpace(string(b)) != digests[0].String() {
		t.Errorf("digest file %q %v, want %s", b, err, digests[0])
	}
	t.Logf("index %s", digests[0])

	p, err := layout.FromPath(filepath.Join(out[0], "oci"))
	if err != nil {
		t.Fatal(err)
	}
	outer, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(om.Manifests) != 1 || om.Manifests[0].Digest != digests[0] || om.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != cfg.Version {
		t.Fatalf("layout index.json: %+v, want the index %s named %s", om.Manifests, digests[0], cfg.Version)
	}
	idx, err := outer.ImageIndex(digests[0])
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", mt, types.OCIImageIndex)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, img, *m.Platform, cfg)

		// The docker tarball holds the same image (config and layers).
		tb, err := tarball.ImageFromPath(filepath.Join(out[0], "hindsight-"+m.Platform.OS+"-"+m.Platform.Architecture+".tar"), nil)
		if err != nil {
			t.Fatalf("docker tarball of %s: %v", m.Platform, err)
		}
		want, _ := img.ConfigName()
		if got, err := tb.ConfigName(); err != nil || got != want {
			t.Errorf("docker tarball of %s: config %s %v, want %s", m.Platform, got, err, want)
		}
	}
	if got, want := strings.Join(platforms, ","), "linux/amd64,linux/arm64"; got != want {
		t.Errorf("platforms %s, want %s", got, want)
	}
}

// checkImage checks one platform's image; the host's is extracted and run.
func checkImage(t *testing.T, img v1.Image, p v1.Platform, cfg Config) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("%s: user %q, want 65532:65532 (non-root)", p, cf.Config.User)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != binary {
		t.Errorf("%s: entrypoint %q, want [%s]", p, cf.Config.Entrypoint, binary)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  cfg.Version,
		"org.opencontainers.image.revision": cfg.Revision,
		"org.opencontainers.image.created":  cfg.Created.Format(time.RFC3339),
		"org.opencontainers.image.source":   source,
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("%s: label %s = %q, want %q", p, k, got, want)
		}
	}
	if !cf.Created.Time.Equal(cfg.Created) {
		t.Errorf("%s: created %s, want the commit's time %s", p, cf.Created.Time, cfg.Created)
	}

	files := map[string]*tar.Header{}
	dir := t.TempDir()
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = h
		if !h.ModTime.Equal(cfg.Created) {
			t.Errorf("%s: %s dated %s, want the commit's time", p, h.Name, h.ModTime)
		}
		switch h.Name {
		case strings.TrimPrefix(binary, "/"), strings.TrimPrefix(caFile, "/"), "etc/passwd":
			f := filepath.Join(dir, filepath.Base(h.Name))
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox"} {
		if _, ok := files[shell]; ok {
			t.Errorf("%s: has %s", p, shell)
		}
	}
	if h := files[dataDir]; h == nil || h.Uid != uid || h.Typeflag != tar.TypeDir {
		t.Errorf("%s: %s is %+v, want a directory owned by %d", p, dataDir, h, uid)
	}
	if h := files[binary]; h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("%s: no executable %s", p, binary)
	}
	passwd, _ := os.ReadFile(filepath.Join(dir, "passwd"))
	if !strings.Contains(string(passwd), "nonroot:x:65532:65532:") {
		t.Errorf("%s: /etc/passwd %q has no nonroot user", p, passwd)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, filepath.Base(caFile)))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) || strings.Count(string(ca), "BEGIN CERTIFICATE") < 100 {
		t.Errorf("%s: %s holds %d certificates, want the Mozilla set (over 100)", p, caFile, strings.Count(string(ca), "BEGIN CERTIFICATE"))
	}
	if p.Architecture != runtime.GOARCH || p.OS != runtime.GOOS {
		return
	}
	out, err := exec.Command(filepath.Join(dir, filepath.Base(binary)), "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hindsight "+cfg.Version {
		t.Errorf("%s --version: %q %v, want %q", binary, out, err, "hindsight "+cfg.Version)
	}
	t.Logf("%s: %s --version: %s", p, binary, strings.TrimSpace(string(out)))
}

func TestTagSafe(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"v1.2.3", "v1.2.3"},
		{"c984d0b-dirty", "c984d0b-dirty"},
		{"feature/x+y", "feature_x_y"},
		{strings.Repeat("a", 200), strings.Repeat("a", 128)},
	} {
		if got := tagSafe(c.in); got != c.want {
			t.Errorf("tagSafe(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
