package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// StartServer starts a server process that belongs to the cluster: its log goes to
// <Dir>/logs/<name>.log and Stop stops it with the rest.
func (c *Cluster) StartServer(name, bin string, args ...string) (*Process, error) {
	return c.start(name, bin, args...)
}

// MetricsServer is the running metrics-server peer.
type MetricsServer struct {
	*Process
	Port int
	args []string
}

// MetricsServerOptions configure the peer.
type MetricsServerOptions struct {
	// Resolution is --metric-resolution; zero means 10s.
	Resolution time.Duration
	// Register makes it the cluster's metrics.k8s.io/v1beta1 server (APIService) and waits
	// until the APIService is Available.
	Register bool
}

// StartMetricsServer starts the metrics-server v0.9.0 peer on a free port as user
// system:metrics-server, scraping kwok with verified TLS, exactly as a cluster would run it.
func (c *Cluster) StartMetricsServer(ctx context.Context, o MetricsServerOptions) (*MetricsServer, error) {
	if o.Resolution == 0 {
		o.Resolution = 10 * time.Second
	}
	const user = "system:metrics-server"
	if err := c.GrantMetricsServerRBAC(ctx, user); err != nil {
		return nil, err
	}
	cert, key, err := c.PKI.ClientCert("metrics-server-client", user)
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(c.Dir, "kubeconfig", "metrics-server.conf")
	if err := c.WriteKubeconfig(kc, user, cert, key); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	port := ports[0]
	// metrics-server requires --metric-resolution > --kubelet-request-timeout.
	timeout := min(10*time.Second, o.Resolution/2)
	args := []string{
		"--bind-address=127.0.0.1", "--secure-port=" + itoa(port),
		"--tls-cert-file=" + c.PKI.Path("metrics-server-serving.crt"), "--tls-private-key-file=" + c.PKI.Path("metrics-server-serving.key"),
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--kubelet-preferred-address-types=InternalIP", "--kubelet-use-node-status-port",
		"--kubelet-certificate-authority=" + c.PKI.Path("ca.crt"),
		"--metric-resolution=" + o.Resolution.String(), "--kubelet-request-timeout=" + timeout.String(),
	}
	ms := &MetricsServer{Port: port, args: args}
	if err := c.runMetricsServer(ctx, ms); err != nil {
		return nil, err
	}
	if o.Register {
		if err := c.RegisterAPIService(ctx, "metrics-server", port, "metrics.k8s.io", "v1beta1"); err != nil {
			return nil, err
		}
		if err := c.WaitAPIServiceAvailable(ctx, "v1beta1.metrics.k8s.io", 120*time.Second); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// RestartMetricsServer starts a stopped metrics-server again with the same arguments (its
// port, so a registered APIService stays pointed at it) and waits until it answers /livez.
func (c *Cluster) RestartMetricsServer(ctx context.Context, ms *MetricsServer) error {
	if done, _ := ms.Exited(); !done {
		return fmt.Errorf("metrics-server (pid %d) is still running", ms.PID())
	}
	return c.runMetricsServer(ctx, ms)
}

func (c *Cluster) runMetricsServer(ctx context.Context, ms *MetricsServer) error {
	p, err := c.start("metrics-server", c.Tools.MetricsServer, ms.args...)
	if err != nil {
		return err
	}
	ms.Process = p
	if err := waitReady(ctx, p, 60*time.Second, "metrics-server /livez", httpOK(insecureHTTP, fmt.Sprintf("https://127.0.0.1:%d/livez", ms.Port))); err != nil {
		return err
	}
	c.logf("metrics-server %s serving on 127.0.0.1:%d (pid %d)", MetricsServerVersion, ms.Port, p.PID())
	return nil
}

// ServiceAccountToken creates the service account if needed and returns a bearer token
// for it (TokenRequest, one hour).
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := c.client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	tr, err := c.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}
