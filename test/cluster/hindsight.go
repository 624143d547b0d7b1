package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// BuildHindsight builds ./cmd/hindsight from this source tree into dir and returns the
// binary's path. With a warm Go build cache it takes seconds.
func BuildHindsight(ctx context.Context, dir string) (string, error) {
	return BuildHindsightTags(ctx, dir)
}

// BuildHindsightTags is BuildHindsight with build tags (crashpoints, say); the binary is
// named hindsight-<tags> then.
func BuildHindsightTags(ctx context.Context, dir string, tags ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	name := "hindsight"
	args := []string{"build"}
	if len(tags) > 0 {
		name += "-" + strings.Join(tags, "-")
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", bin, "./cmd/hindsight")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build hindsight: %w\n%s", err, out)
	}
	return bin, nil
}

// HindsightGroups are the API groups besides metrics.k8s.io that Hindsight serves for the
// aggregator (v1 each): the history API and the Prometheus-compatible API, named as in
// deploy/kustomize/base/apiservice.yaml.
var HindsightGroups = []string{"history.hindsight.dev", "prometheus.hindsight.dev"}

// Hindsight is a running Hindsight process of the cluster.
type Hindsight struct {
	*Process
	Port       int
	StorageDir string
	// Args are the arguments it was started with, to start it again the same way.
	Args []string
	// Env are VAR=value settings added to its environment at every (re)start.
	Env []string
	bin string
}

// HindsightOptions configure StartHindsight.
type HindsightOptions struct {
	// Binary is the hindsight binary; empty means BuildHindsight into the cluster dir.
	Binary string
	// Resolution is --metric-resolution; zero means 10s.
	Resolution time.Duration
	// StorageDir is --storage-path; empty means <cluster dir>/data/hindsight.
	StorageDir string
	// Port is --secure-port; zero means a free port.
	Port int
	// Register makes Hindsight the cluster's metrics.k8s.io server for v1 and v1beta1,
	// registers HindsightGroups too, and waits until every APIService is Available.
	Register bool
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// BuildTags build the binary with these tags when Binary is empty.
	BuildTags []string
	// Env is the started Hindsight's Env.
	Env []string
	// Kubeconfig, when set, is Hindsight's identity for the kube-apiserver (--kubeconfig and
	// the delegated authentication and authorization kubeconfigs), and the harness grants
	// it nothing: the caller has applied its RBAC (a ServiceAccount's, say).
	Kubeconfig string
	// ServingCert and ServingKey, when set, are its serving certificate and key instead of
	// the cluster PKI's "hindsight.kube-system.svc" one.
	ServingCert, ServingKey string
}

// StartHindsight starts Hindsight as user system:hindsight with the RBAC of
// HindsightRBACManifest (bound to that user), or as o.Kubeconfig's identity with the RBAC
// the caller applied, and the flags a cluster gives metrics-server:
// delegated authentication and authorization through the kube-apiserver, kubelet TLS
// verified against the cluster CA, the kubeconfig's client certificate presented to kubelets.
func (c *Cluster) StartHindsight(ctx context.Context, o HindsightOptions) (*Hindsight, error) {
	if o.Resolution == 0 {
		o.Resolution = 10 * time.Second
	}
	if o.StorageDir == "" {
		o.StorageDir = filepath.Join(c.Dir, "data", "hindsight")
	}
	if o.Binary == "" {
		var err error
		if o.Binary, err = BuildHindsightTags(ctx, filepath.Join(c.Dir, "bin"), o.BuildTags...); err != nil {
			return nil, err
		}
	}
	kc := o.Kubeconfig
	if kc == "" {
		var err error
		if kc, err = c.hindsightKubeconfig(ctx); err != nil {
			return nil, err
		}
	}
	servingCert, servingKey := c.PKI.Path("hindsight-serving.crt"), c.PKI.Path("hindsight-serving.key")
	if o.ServingCert != "" {
		servingCert, servingKey = o.ServingCert, o.ServingKey
	}
	if o.Port == 0 {
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		o.Port = ports[0]
	}
	timeout := min(10*time.Second, o.Resolution/2)
	args := append([]string{
		"--bind-address=127.0.0.1", "--secure-port=" + itoa(o.Port),
		"--tls-cert-file=" + servingCert, "--tls-private-key-file=" + servingKey,
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
		"--kubelet-certificate-authority=" + c.PKI.Path("ca.crt"),
		"--metric-resolution=" + o.Resolution.String(), "--kubelet-request-timeout=" + timeout.String(),
		"--storage-path=" + o.StorageDir,
	}, o.ExtraArgs...)
	h := &Hindsight{Port: o.Port, StorageDir: o.StorageDir, Args: args, Env: o.Env, bin: o.Binary}
	if err := c.runHindsight(ctx, h); err != nil {
		return nil, err
	}
	if o.Register {
		if err := c.RegisterAPIService(ctx, "hindsight", o.Port, "metrics.k8s.io", "v1", "v1beta1"); err != nil {
			return nil, err
		}
		for _, g := range HindsightGroups {
			if err := c.RegisterAPIService(ctx, "hindsight", o.Port, g, "v1"); err != nil {
				return nil, err
			}
		}
		names := []string{"v1.metrics.k8s.io", "v1beta1.metrics.k8s.io"}
		for _, g := range HindsightGroups {
			names = append(names, "v1."+g)
		}
		for _, n := range names {
			if err := c.WaitAPIServiceAvailable(ctx, n, 120*time.Second); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

// RestartHindsight starts a stopped or killed Hindsight again with the same arguments and
// storage, and waits until it answers /livez.
func (c *Cluster) RestartHindsight(ctx context.Context, h *Hindsight) error {
	if done, _ := h.Exited(); !done {
		return fmt.Errorf("hindsight (pid %d) is still running", h.PID())
	}
	return c.runHindsight(ctx, h)
}

// LaunchHindsight starts a stopped or killed Hindsight again with the same arguments,
// environment and storage, without waiting for it to answer: for a test of a Hindsight
// that cannot get live (its rights taken away).
func (c *Cluster) LaunchHindsight(h *Hindsight) error {
	if h.Process != nil {
		if done, _ := h.Exited(); !done {
			return fmt.Errorf("hindsight (pid %d) is still running", h.PID())
		}
	}
	bin, args := h.bin, h.Args
	if len(h.Env) > 0 {
		// env(1) execs the binary in its own process: same PID, same process group.
		bin, args = "env", append(append(slices.Clone(h.Env), h.bin), h.Args...)
	}
	p, err := c.start("hindsight", bin, args...)
	if err != nil {
		return err
	}
	h.Process = p
	return nil
}

func (c *Cluster) runHindsight(ctx context.Context, h *Hindsight) error {
	if err := c.LaunchHindsight(h); err != nil {
		return err
	}
	p := h.Process
	url := fmt.Sprintf("https://127.0.0.1:%d/livez", h.Port)
	if err := waitReady(ctx, p, 60*time.Second, "hindsight /livez", httpOK(insecureHTTP, url)); err != nil {
		return err
	}
	c.logf("hindsight serving on 127.0.0.1:%d (pid %d)", h.Port, p.PID())
	return nil
}

// hindsightKubeconfig grants user system:hindsight the RBAC of HindsightRBACManifest and
// returns a kubeconfig with its client certificate.
func (c *Cluster) hindsightKubeconfig(ctx context.Context) (string, error) {
	const user = "system:hindsight"
	if err := c.GrantHindsightRBAC(ctx, user); err != nil {
		return "", err
	}
	kc := filepath.Join(c.Dir, "kubeconfig", "hindsight.conf")
	if _, err := os.Stat(kc); err != nil {
		cert, key, err := c.PKI.ClientCert("hindsight-client", user)
		if err != nil {
			return "", err
		}
		if err := c.WriteKubeconfig(kc, user, cert, key); err != nil {
			return "", err
		}
	}
	return kc, nil
}
