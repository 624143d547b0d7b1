package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Versions of the local control plane. Each is pinned in a module under test/tools/; these
// constants only label the binaries (kubectl version, logs) and must match those go.mod files.
const (
	KubernetesVersion    = "v1.34.4"
	KwokVersion          = "v0.8.0"
	MetricsServerVersion = "v0.9.0"
	PrometheusVersion    = "v3.15.0"
	HelmVersion          = "v4.3.2"
	Kubectl137Version    = "v1.37.2" // a kubectl newer than the control plane
)

// Tools are the paths of the built control-plane binaries.
type Tools struct {
	Dir                   string
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	Kubectl               string
	Kubectl137            string // kubectl-1.37
	Kwok                  string
	KwokConfig            string
	MetricsServer         string
	Promtool              string
	Helm                  string
}

func toolsIn(dir string) Tools {
	return Tools{
		Dir:                   dir,
		Etcd:                  filepath.Join(dir, "etcd"),
		KubeAPIServer:         filepath.Join(dir, "kube-apiserver"),
		KubeControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Kubectl:               filepath.Join(dir, "kubectl"),
		Kubectl137:            filepath.Join(dir, "kubectl-1.37"),
		Kwok:                  filepath.Join(dir, "kwok"),
		KwokConfig:            filepath.Join(dir, "kwok-config"),
		MetricsServer:         filepath.Join(dir, "metrics-server"),
		Promtool:              filepath.Join(dir, "promtool"),
		Helm:                  filepath.Join(dir, "helm"),
	}
}

// toolModule is one module under test/tools/ and how to build it.
type toolModule struct {
	name    string   // directory under test/tools
	what    string   // for progress lines
	targets []string // go build targets
	ldflags string
	renames map[string]string // built name -> final name
	outputs []string          // final names this module produces
	// stamped modules are left out of the tools directory's key: their stamp file holds a
	// hash of their own module, and a change rebuilds them alone. A module added to the
	// tools later is stamped, so that adding it does not rebuild the others.
	stamped bool
}

func toolModules() []toolModule {
	return []toolModule{
		{
			name:    "k8s",
			what:    "etcd, kube-apiserver, kube-controller-manager and kubectl " + KubernetesVersion,
			targets: []string{"tool"},
			ldflags: "-s -w " + versionLDFlags(KubernetesVersion),
			renames: map[string]string{"server": "etcd"}, // go.etcd.io/etcd/server/v3 builds as "server"
			outputs: []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"},
		},
		{
			name:    "kwok",
			what:    "kwok " + KwokVersion + " and kwok-config",
			targets: []string{"tool", "./kwok-config"},
			ldflags: "-s -w",
			outputs: []string{"kwok", "kwok-config"},
		},
		{
			name:    "metrics-server",
			what:    "metrics-server " + MetricsServerVersion + " (the peer)",
			targets: []string{"tool"},
			ldflags: "-s -w " + versionLDFlags(MetricsServerVersion),
			outputs: []string{"metrics-server"},
		},
		{
			name:    "promtool",
			what:    "promtool (Prometheus " + PrometheusVersion + "), a client of the Prometheus-compatible API",
			targets: []string{"tool"},
			ldflags: "-s -w",
			outputs: []string{"promtool"},
			stamped: true,
		},
		{
			name:    "helm",
			what:    "helm " + HelmVersion,
			targets: []string{"tool"},
			ldflags: "-s -w -X helm.sh/helm/v4/internal/version.version=" + HelmVersion +
				" -X helm.sh/helm/v4/internal/version.gitTreeState=clean",
			outputs: []string{"helm"},
			stamped: true,
		},
		{
			name:    "kubectl137",
			what:    "kubectl " + Kubectl137Version + " (as kubectl-1.37)",
			targets: []string{"./kubectl"},
			ldflags: "-s -w " + versionLDFlags(Kubectl137Version),
			renames: map[string]string{"kubectl": "kubectl-1.37"}, // not to clash with the v1.34 kubectl
			outputs: []string{"kubectl-1.37"},
			stamped: true,
		},
	}
}

// versionLDFlags sets k8s.io/component-base/version; without it binaries report
// v0.0.0-master+$Format:%H$ and kubectl version fails to parse it.
func versionLDFlags(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	major, minor := parts[0], ""
	if len(parts) > 1 {
		minor = parts[1]
	}
	const p = "k8s.io/component-base/version."
	return strings.Join([]string{
		"-X " + p + "gitVersion=" + v,
		"-X " + p + "gitMajor=" + major,
		"-X " + p + "gitMinor=" + minor,
		"-X " + p + "gitTreeState=clean",
	}, " ")
}

// RepoRoot returns the root of the Hindsight source tree this package was compiled from.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate source tree: runtime.Caller failed")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "test", "tools", "k8s", "go.mod")); err != nil {
		return "", fmt.Errorf("locate source tree: %w", err)
	}
	return root, nil
}

// CacheDir is where built tools are kept: $HINDSIGHT_TOOLS_CACHE, else the user cache
// directory (~/.cache/hindsight/tools).
func CacheDir() (string, error) {
	if d := os.Getenv("HINDSIGHT_TOOLS_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir: %w", err)
	}
	return filepath.Join(d, "hindsight", "tools"), nil
}

// EnsureTools builds the control-plane binaries from the modules under test/tools/ into the
// cache directory, unless binaries built from the same go.mod, go.sum and sources are already
// there, and returns their paths. The first build on a machine takes several minutes (about
// 8 on 2 cores with empty Go caches); a later call returns in milliseconds. Progress goes to
// progress. Concurrent callers (parallel test packages) serialise on a file lock.
func EnsureTools(ctx context.Context, progress io.Writer) (Tools, error) {
	root, err := RepoRoot()
	if err != nil {
		return Tools{}, err
	}
	cache, err := CacheDir()
	if err != nil {
		return Tools{}, err
	}
	key, err := toolsKey(root)
	if err != nil {
		return Tools{}, err
	}
	dir := filepath.Join(cache, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Tools{}, fmt.Errorf("create tools dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return Tools{}, err
	}
	defer unlock()

	for _, m := range toolModules() {
		stamp := filepath.Join(dir, ".built-"+m.name)
		want := ""
		if m.stamped {
			if want, err = moduleKey(root, m.name); err != nil {
				return Tools{}, err
			}
		}
		if got, err := os.ReadFile(stamp); err == nil && allExist(dir, m.outputs) && (!m.stamped || string(got) == want) {
			continue
		}
		fmt.Fprintf(progress, "cluster: building %s into %s (first time only: minutes on 2 cores)\n", m.what, dir)
		start := time.Now()
		if err := buildModule(ctx, filepath.Join(root, "test", "tools", m.name), dir, m, progress); err != nil {
			return Tools{}, err
		}
		content := time.Now().UTC().Format(time.RFC3339) + "\n"
		if m.stamped {
			content = want
		}
		if err := os.WriteFile(stamp, []byte(content), 0o644); err != nil {
			return Tools{}, fmt.Errorf("write stamp: %w", err)
		}
		fmt.Fprintf(progress, "cluster: built %s in %s\n", m.what, time.Since(start).Round(time.Second))
	}
	return toolsIn(dir), nil
}

func buildModule(ctx context.Context, modDir, out string, m toolModule, progress io.Writer) error {
	tmp, err := os.MkdirTemp(out, ".build-"+m.name+"-")
	if err != nil {
		return fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"build", "-ldflags", m.ldflags, "-o", tmp + string(filepath.Separator)}, m.targets...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly -buildvcs=false")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log

	done := make(chan struct{})
	defer close(done)
	go func() { // a heartbeat, so a long cold build does not look hung
		start := time.Now()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "cluster:   still building %s (%s)\n", m.name, time.Since(start).Round(time.Second))
			}
		}
	}()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w\n%s", m.name, err, log.String())
	}
	for from, to := range m.renames {
		if err := os.Rename(filepath.Join(tmp, from), filepath.Join(tmp, to)); err != nil {
			return fmt.Errorf("rename %s: %w", from, err)
		}
	}
	for _, name := range m.outputs {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(out, name)); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	return nil
}

// toolsKey hashes everything that decides what the tools build into: the Go version and
// every file of the tool modules under test/tools/.
func toolsKey(root string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	base := filepath.Join(root, "test", "tools")
	for _, m := range toolModules() {
		if m.stamped {
			continue
		}
		if err := hashDir(h, base, m.name); err != nil {
			return "", fmt.Errorf("hash test/tools: %w", err)
		}
	}
	return KubernetesVersion + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// moduleKey hashes the Go version and the files of one stamped tool module.
func moduleKey(root, name string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	if err := hashDir(h, filepath.Join(root, "test", "tools"), name); err != nil {
		return "", fmt.Errorf("hash test/tools/%s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)) + "\n", nil
}

func hashDir(h io.Writer, base, name string) error {
	return filepath.WalkDir(filepath.Join(base, name), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, path)
		fmt.Fprintf(h, "%s %d\n", rel, len(data))
		_, err = h.Write(data)
		return err
	})
}

func allExist(dir string, names []string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
