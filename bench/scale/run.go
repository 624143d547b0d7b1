package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// benchControllers: the fleet's pods must not be replaced (no deployment or replicaset
// controller), and nothing renews its nodes' leases (no node lifecycle controller).
var benchControllers = []string{"serviceaccount-controller", "serviceaccount-token-controller", "namespace-controller", "garbage-collector-controller"}

// run is one scenario in progress.
type run struct {
	sc     Scenario
	res    *Result
	logf   func(format string, args ...any)
	c      *cluster.Cluster
	client kubernetes.Interface
	fleetP *cluster.Process
	h      *cluster.Hindsight
	ms     *cluster.MetricsServer
	procs  [2]func() *cluster.Process
	// direct[i] is an admin client of server i's own port; aggregated the kube-apiserver's.
	direct     [2]*rest.Config
	aggregated *rest.Config
	versions   [2]string // the metrics.k8s.io version each serves through the aggregator
}

// Run runs scenario sc on a new local control plane and returns its figures. progress gets
// a line per step.
func Run(ctx context.Context, sc Scenario, progress io.Writer) (_ *Result, err error) {
	sc = sc.withDefaults()
	sc.Spec.Epoch = time.Now().Add(-sc.Backfill - time.Hour).Truncate(time.Second)
	if err := sc.Spec.Validate(); err != nil {
		return nil, err
	}
	r := &run{sc: sc, res: &Result{Scenario: sc, Started: time.Now(), Machine: machine(),
		Versions: map[string]string{"go": runtime.Version(), "metrics-server": cluster.MetricsServerVersion, "kubernetes": "v1.37.2"}}}
	r.logf = func(format string, args ...any) { fmt.Fprintf(progress, "scale: "+format+"\n", args...) }
	r.res.Servers[Hindsight].Name, r.res.Servers[MetricsServer].Name = "hindsight", "metrics-server"
	r.c, err = cluster.Start(ctx, cluster.Options{Progress: progress, Controllers: benchControllers})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, r.c.Stop()) }()
	cfg := r.c.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0 // bulk creation: no client-side rate limit
	if r.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"fleet", r.startFleet},
		{"backfill", r.backfill},
		{"servers", r.startServers},
		{"steady state", r.steady},
		{"lists", r.lists},
		{"restart", r.restarts},
	}
	for _, s := range steps {
		begin := time.Now()
		if err := s.f(ctx); err != nil {
			return r.res, fmt.Errorf("%s: %w", s.name, err)
		}
		r.logf("%s done in %s", s.name, time.Since(begin).Round(100*time.Millisecond))
	}
	return r.res, nil
}

// startFleet starts the fake kubelets and creates the fleet's objects.
func (r *run) startFleet(ctx context.Context) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(r.c.Dir, "bin", "fakekubelets")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./bench/cmd/fakekubelets")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build fakekubelets: %w\n%s", err, out)
	}
	s := r.sc.Spec
	portsFile := filepath.Join(r.c.Dir, "fleet-ports.json")
	r.fleetP, err = r.c.StartServer("fakekubelets", bin,
		"-nodes="+strconv.Itoa(s.Nodes), "-pods-per-node="+strconv.Itoa(s.PodsPerNode),
		"-containers-per-pod="+strconv.Itoa(s.ContainersPerPod), "-namespaces="+strconv.Itoa(s.Namespaces),
		"-deployments="+strconv.Itoa(s.Deployments), "-epoch="+strconv.FormatInt(s.Epoch.Unix(), 10),
		"-tls-cert-file="+r.c.PKI.Path("loopback-serving.crt"), "-tls-private-key-file="+r.c.PKI.Path("loopback-serving.key"),
		"-ports="+portsFile)
	if err != nil {
		return err
	}
	var ports map[string]int
	if err := cluster.Poll(ctx, 2*time.Minute, 100*time.Millisecond, "the fleet's ports", func(context.Context) (bool, error) {
		if done, err := r.fleetP.Exited(); done {
			return false, fmt.Errorf("fakekubelets exited: %v: %s", err, r.fleetP.Tail(20))
		}
		b, err := os.ReadFile(portsFile)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, json.Unmarshal(b, &ports)
	}); err != nil {
		return err
	}
	begin := time.Now()
	if err := s.Create(ctx, r.client, ports, r.sc.Workers, r.logf); err != nil {
		return err
	}
	r.res.CreateTime = time.Since(begin)
	r.res.PodsPerSec = float64(s.Pods()) / r.res.CreateTime.Seconds()
	return nil
}

// startServers starts both servers, registers Hindsight for metrics.k8s.io/v1 and
// metrics-server for v1beta1, and waits until each serves every pod.
func (r *run) startServers(ctx context.Context) error {
	bin, err := cluster.BuildHindsight(ctx, filepath.Join(r.c.Dir, "bin"))
	if err != nil {
		return err
	}
	msStart := time.Now()
	r.ms, err = r.c.StartMetricsServer(ctx, cluster.MetricsServerOptions{Resolution: r.sc.Resolution})
	if err != nil {
		return err
	}
	hStart := time.Now()
	r.h, err = r.c.StartHindsight(ctx, cluster.HindsightOptions{Binary: bin, Resolution: r.sc.Resolution, StorageDir: r.storageDir(), Register: true})
	if err != nil {
		return err
	}
	if err := r.c.RegisterAPIService(ctx, "metrics-server", r.ms.Port, "metrics.k8s.io", "v1beta1"); err != nil {
		return err
	}
	if err := r.c.WaitAPIServiceAvailable(ctx, "v1beta1.metrics.k8s.io", 2*time.Minute); err != nil {
		return err
	}
	r.procs = [2]func() *cluster.Process{func() *cluster.Process { return r.h.Process }, func() *cluster.Process { return r.ms.Process }}
	r.versions = [2]string{"v1", "v1beta1"}
	for i, port := range []int{r.h.Port, r.ms.Port} {
		cfg := r.c.RESTConfig()
		cfg.Host = "https://127.0.0.1:" + strconv.Itoa(port)
		cfg.QPS, cfg.Burst = -1, 0
		r.direct[i] = cfg
	}
	r.aggregated = r.c.RESTConfig()
	r.aggregated.QPS, r.aggregated.Burst = -1, 0
	return r.waitBoth(ctx, [2]time.Time{hStart, msStart}, 10*r.sc.Resolution+time.Minute, func(i int, d time.Duration) {
		r.res.Servers[i].FirstComplete = d
		r.logf("%s serves every pod %s after its start", r.res.Servers[i].Name, d.Round(100*time.Millisecond))
	})
}

func (r *run) storageDir() string { return filepath.Join(r.c.Dir, "data", "hindsight") }

func machine() string {
	host, _ := os.Hostname()
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%s (%d cores, %s%s, %s/%s)", host, runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH)
}
