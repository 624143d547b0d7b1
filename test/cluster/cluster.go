package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure a local cluster. The zero value is usable.
type Options struct {
	// Dir holds the cluster's PKI, kubeconfigs, data and logs. Empty means a new temporary
	// directory, removed by Stop.
	Dir string
	// Progress receives one line per step; nil means io.Discard.
	Progress io.Writer
	// Services are the names of aggregated API servers that get a serving certificate for
	// "<name>.kube-system.svc" (file "<name>-serving.crt"). Default: metrics-server, hindsight.
	Services []string
	// HPASyncPeriod is kube-controller-manager's --horizontal-pod-autoscaler-sync-period.
	// Zero means 5s.
	HPASyncPeriod time.Duration
	// HPADownscaleStabilization is --horizontal-pod-autoscaler-downscale-stabilization.
	// Zero means 30s.
	HPADownscaleStabilization time.Duration
	// AuditPolicy, when set, is a kube-apiserver audit policy (YAML): the kube-apiserver
	// then writes audit events as JSON lines to AuditLogPath.
	AuditPolicy string
	// Controllers, when set, is kube-controller-manager's --controllers instead of
	// DefaultControllers: a benchmark fleet whose pods nothing may replace runs without the
	// deployment and replicaset controllers.
	Controllers []string
}

// DefaultControllers are the kube-controller-manager controllers a cluster runs: the HPA, the
// workload controllers kwok's pods need, the garbage collector, service-account tokens,
// namespace deletion, and clusterrole aggregation (view, edit and admin gather the readers'
// roles, as in a real cluster). No node lifecycle controller: nothing renews fake nodes'
// leases.
var DefaultControllers = []string{
	"horizontal-pod-autoscaler-controller", "deployment-controller", "replicaset-controller",
	"garbage-collector-controller", "serviceaccount-controller", "serviceaccount-token-controller", "namespace-controller",
	"clusterrole-aggregation-controller",
}

// Cluster is a running local control plane: etcd, kube-apiserver, kube-controller-manager
// and kwok, all on 127.0.0.1 with ports chosen at run time.
type Cluster struct {
	Tools Tools
	Dir   string
	PKI   PKI
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// KwokPort is the port on which kwok serves every fake kubelet.
	KwokPort int

	progress io.Writer
	ownDir   bool
	procs    []*Process // in start order
	config   *rest.Config
	client   kubernetes.Interface
}

// Start builds the tools if needed and starts a cluster. On error, whatever it started is
// stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if len(opts.Services) == 0 {
		opts.Services = []string{"metrics-server", "hindsight"}
	}
	if opts.HPASyncPeriod == 0 {
		opts.HPASyncPeriod = 5 * time.Second
	}
	if opts.HPADownscaleStabilization == 0 {
		opts.HPADownscaleStabilization = 30 * time.Second
	}
	tools, err := EnsureTools(ctx, opts.Progress)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Tools: tools, Dir: opts.Dir, progress: opts.Progress}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "hindsight-cluster-"); err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	start := time.Now()
	if c.PKI, err = newPKI(filepath.Join(c.Dir, "pki"), opts.Services); err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c.APIServerURL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	c.KwokPort = kwokPort
	if err := c.writeKubeconfigs(); err != nil {
		return nil, err
	}

	if err := c.startEtcd(ctx, etcdClient, etcdPeer); err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, apiPort, etcdClient, opts.AuditPolicy); err != nil {
		return nil, err
	}
	if err := c.startControllerManager(ctx, kcmPort, opts); err != nil {
		return nil, err
	}
	if err := c.startKwok(ctx); err != nil {
		return nil, err
	}
	if err := c.waitServiceAccount(ctx, "default", "default"); err != nil {
		return nil, err
	}
	c.logf("control plane ready in %s (dir %s)", time.Since(start).Round(100*time.Millisecond), c.Dir)
	return c, nil
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.progress, "cluster: "+format+"\n", args...)
}

// Stop stops every process the cluster started, newest first, and removes the cluster
// directory if Start created it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		if err := c.procs[i].Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	c.procs = nil
	if c.ownDir && len(errs) == 0 {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
		}
		c.ownDir = false
	}
	return errors.Join(errs...)
}

// PIDs returns the process ids of the running servers, by name.
func (c *Cluster) PIDs() map[string]int {
	m := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		if done, _ := p.Exited(); !done {
			m[p.name] = p.PID()
		}
	}
	return m
}

// Kubeconfig returns the path of the cluster-admin kubeconfig.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.Dir, "kubeconfig", "admin.conf") }

// RESTConfig returns a copy of the cluster-admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Client returns a cluster-admin clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Kubectl runs the pinned kubectl with the admin kubeconfig and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Tools.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// KubectlWith runs another kubectl binary (such as Tools.Kubectl137) against the cluster
// as the admin and returns its combined output.
func (c *Cluster) KubectlWith(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.Kubeconfig()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// WriteKubeconfig writes a kubeconfig for a client certificate to path.
func (c *Cluster) WriteKubeconfig(path, user, certFile, keyFile string) error {
	return writeKubeconfig(path, c.APIServerURL, c.PKI.Path("ca.crt"), user, certFile, keyFile, "")
}

// WriteTokenKubeconfig writes a kubeconfig that authenticates with a bearer token.
func (c *Cluster) WriteTokenKubeconfig(path, user, token string) error {
	return writeKubeconfig(path, c.APIServerURL, c.PKI.Path("ca.crt"), user, "", "", token)
}

// writeKubeconfig writes a kubeconfig that refers to the CA and client key pair by path
// rather than embedding them: a server that reads it (Hindsight, metrics-server) can then
// present the same files to kubelets.
func writeKubeconfig(path, server, caFile, user, certFile, keyFile, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token, ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	cfg.CurrentContext = "local"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create kubeconfig dir: %w", err)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func (c *Cluster) kubeconfigPath(name string) string {
	return filepath.Join(c.Dir, "kubeconfig", name+".conf")
}

func (c *Cluster) writeKubeconfigs() error {
	for _, k := range []struct{ name, user string }{
		{"admin", "admin"},
		{"controller-manager", "system:kube-controller-manager"},
		{"kwok", "kwok"},
	} {
		if err := c.WriteKubeconfig(c.kubeconfigPath(k.name), k.user, c.PKI.Path(k.name+".crt"), c.PKI.Path(k.name+".key")); err != nil {
			return err
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c.config = cfg
	if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	return nil
}

// startWith starts a server with args, then extra.
func (c *Cluster) startWith(extra []string, name, bin string, args ...string) (*Process, error) {
	return c.start(name, bin, append(args, extra...)...)
}

func (c *Cluster) start(name, bin string, args ...string) (*Process, error) {
	p, err := startProcess(name, c.Dir, bin, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *Cluster) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	s := time.Now()
	client := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	p, err := c.start("etcd", c.Tools.Etcd,
		"--name=local", "--data-dir="+filepath.Join(c.Dir, "data", "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=local="+peer,
		"--unsafe-no-fsync", // a throwaway test store: speed over durability
		"--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, 60*time.Second, "etcd health", httpOK(plainHTTP, client+"/health")); err != nil {
		return err
	}
	c.logf("etcd healthy on %s in %s", client, time.Since(s).Round(100*time.Millisecond))
	return nil
}

// AuditLogPath is where the kube-apiserver writes audit events when Options.AuditPolicy is set.
func (c *Cluster) AuditLogPath() string { return filepath.Join(c.Dir, "logs", "audit.log") }

// auditFlags writes policy to the cluster dir and returns the kube-apiserver flags that use
// it; none for an empty policy.
func (c *Cluster) auditFlags(policy string) ([]string, error) {
	if policy == "" {
		return nil, nil
	}
	path := filepath.Join(c.Dir, "audit-policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		return nil, fmt.Errorf("write audit policy: %w", err)
	}
	return []string{"--audit-policy-file=" + path, "--audit-log-path=" + c.AuditLogPath(), "--audit-log-format=json"}, nil
}

func (c *Cluster) startAPIServer(ctx context.Context, port, etcdPort int, auditPolicy string) error {
	s := time.Now()
	pki := c.PKI.Path
	audit, err := c.auditFlags(auditPolicy)
	if err != nil {
		return err
	}
	p, err := c.startWith(audit, "kube-apiserver", c.Tools.KubeAPIServer,
		"--bind-address=127.0.0.1", "--secure-port="+itoa(port), "--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none", // loopback endpoints are rejected; see docs/local-cluster.md
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--tls-cert-file="+pki("apiserver.crt"), "--tls-private-key-file="+pki("apiserver.key"),
		"--client-ca-file="+pki("ca.crt"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki("sa.pub"), "--service-account-signing-key-file="+pki("sa.key"),
		"--kubelet-client-certificate="+pki("apiserver-kubelet-client.crt"), "--kubelet-client-key="+pki("apiserver-kubelet-client.key"),
		"--requestheader-client-ca-file="+pki("front-proxy-ca.crt"), "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+pki("front-proxy-client.crt"), "--proxy-client-key-file="+pki("front-proxy-client.key"),
		"--allow-privileged=true", "--profiling=false")
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, 120*time.Second, "kube-apiserver /readyz", c.apiOK("/readyz")); err != nil {
		return err
	}
	c.logf("kube-apiserver ready on %s in %s", c.APIServerURL, time.Since(s).Round(100*time.Millisecond))
	return nil
}

func (c *Cluster) startControllerManager(ctx context.Context, port int, opts Options) error {
	s := time.Now()
	kc := c.kubeconfigPath("controller-manager")
	controllers := opts.Controllers
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	p, err := c.start("kube-controller-manager", c.Tools.KubeControllerManager,
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--bind-address=127.0.0.1", "--secure-port="+itoa(port), "--leader-elect=false",
		"--use-service-account-credentials=true", "--root-ca-file="+c.PKI.Path("ca.crt"),
		"--service-account-private-key-file="+c.PKI.Path("sa.key"),
		"--controllers="+strings.Join(controllers, ","),
		"--horizontal-pod-autoscaler-sync-period="+opts.HPASyncPeriod.String(),
		"--horizontal-pod-autoscaler-downscale-stabilization="+opts.HPADownscaleStabilization.String(),
		// Without these, pods younger than 5 minutes count as unready and block scale-up.
		"--horizontal-pod-autoscaler-cpu-initialization-period=10s",
		"--horizontal-pod-autoscaler-initial-readiness-delay=5s")
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	if err := waitReady(ctx, p, 60*time.Second, "kube-controller-manager /healthz", httpOK(insecureHTTP, url)); err != nil {
		return err
	}
	c.logf("kube-controller-manager healthy in %s", time.Since(s).Round(100*time.Millisecond))
	return nil
}

func (c *Cluster) startKwok(ctx context.Context) error {
	s := time.Now()
	cfgPath := filepath.Join(c.Dir, "kwok.yaml")
	out, err := exec.CommandContext(ctx, c.Tools.KwokConfig).Output()
	if err != nil {
		return fmt.Errorf("generate kwok config: %w", err)
	}
	if err := os.WriteFile(cfgPath, out, 0o644); err != nil {
		return fmt.Errorf("write kwok config: %w", err)
	}
	port := itoa(c.KwokPort)
	p, err := c.start("kwok", c.Tools.Kwok,
		"--kubeconfig="+c.kubeconfigPath("kwok"), "--config="+cfgPath,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--node-ip=127.0.0.1", "--node-port="+port, "--server-address=127.0.0.1:"+port,
		"--tls-cert-file="+c.PKI.Path("loopback-serving.crt"), "--tls-private-key-file="+c.PKI.Path("loopback-serving.key"),
		"--cidr=10.244.0.0/16")
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, 60*time.Second, "kwok /healthz", httpOK(plainHTTP, "http://127.0.0.1:"+port+"/healthz")); err != nil {
		return err
	}
	c.logf("kwok serving fake kubelets on 127.0.0.1:%s in %s", port, time.Since(s).Round(100*time.Millisecond))
	return nil
}

func (c *Cluster) waitServiceAccount(ctx context.Context, ns, name string) error {
	return Poll(ctx, 60*time.Second, 200*time.Millisecond, "service account "+ns+"/"+name, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// apiOK is a condition: GET path on the kube-apiserver as admin answers 200.
func (c *Cluster) apiOK(path string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		body, err := c.client.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(body)) == "ok", nil
	}
}

var (
	plainHTTP    = &http.Client{Timeout: 2 * time.Second}
	insecureHTTP = newInsecureClient() // only for health checks of servers on 127.0.0.1
)

func httpOK(client *http.Client, url string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return true, nil
	}
}

// NodeReady reports whether a node has condition Ready=True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
