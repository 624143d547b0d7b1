package scraper

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/transport"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

const (
	// ResourceMetricsPathAnnotation on a Node overrides the path its kubelet serves resource
	// metrics on (metrics-server ≥0.7 honours it; kwok serves every node under its own path).
	ResourceMetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"
	// DefaultResourceMetricsPath is the kubelet's resource metrics endpoint.
	DefaultResourceMetricsPath = "/metrics/resource"

	defaultKubeletPort    = 10250
	defaultKubeletTimeout = 10 * time.Second
	// defaultMaxBodyBytes admits the largest body a 110-pod node can send (110 pods × 20
	// containers, every name at Kubernetes' limit: 5.1 MiB, see TestDefaultMaxBodyBytes) with
	// half again as margin; a realistic 110-pod body (4 containers a pod) is 0.39 MiB, and a
	// node at MaxPodsPerNode with realistic names 3.6 MiB.
	defaultMaxBodyBytes = 8 << 20
	// defaultMaxBytesInFlight bounds the bodies being read and decoded at once: 32 at the
	// default cap.
	defaultMaxBytesInFlight = 256 << 20
	// acceptHeader asks for the classic text format, the one kubelets have always served.
	acceptHeader = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
)

// DefaultAddressTypes is metrics-server's default --kubelet-preferred-address-types.
var DefaultAddressTypes = []corev1.NodeAddressType{
	corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeInternalIP, corev1.NodeExternalDNS, corev1.NodeExternalIP,
}

// KubeletConfig configures how kubelets are reached. The zero value of every field has a
// documented meaning, so a Config with only the credentials set is usable.
type KubeletConfig struct {
	// Port is the kubelet port (--kubelet-port). Zero means 10250.
	Port int
	// UseNodeStatusPort uses node.status.daemonEndpoints.kubeletEndpoint.port where it is set,
	// Port otherwise (--kubelet-use-node-status-port).
	UseNodeStatusPort bool
	// PreferredAddressTypes is the order in which node addresses are tried; the first address
	// of the first type the node has is used (--kubelet-preferred-address-types). Empty means
	// DefaultAddressTypes.
	PreferredAddressTypes []corev1.NodeAddressType
	// InsecureTLS skips verification of the kubelet's serving certificate
	// (--kubelet-insecure-tls). For tests only; the caller should warn when it is set. The
	// bearer token (BearerToken, TokenFile) is then not sent: an unverified peer could be
	// anyone, and could replay it. A client certificate is still presented: the peer learns
	// the certificate, which it cannot use without the key.
	InsecureTLS bool
	// CAFile is a PEM bundle that verifies kubelet serving certificates
	// (--kubelet-certificate-authority). Empty means the system roots.
	CAFile string
	// ClientCertFile and ClientKeyFile are a PEM client key pair presented to kubelets
	// (--kubelet-client-certificate, --kubelet-client-key). Both or neither. When they are
	// set, no bearer token is sent (BearerToken and TokenFile are ignored). client-go's
	// transport re-reads them (at most once a second) at every TLS handshake, so a rotated
	// pair is used from the next new connection.
	ClientCertFile, ClientKeyFile string
	// BearerToken is sent as "Authorization: Bearer"; empty sends none unless TokenFile is set.
	BearerToken string
	// TokenFile holds a bearer token that client-go's cached file token source re-reads every
	// minute (a projected service-account token rotates); when a re-read fails, the last token
	// read is sent. Mutually exclusive with BearerToken.
	TokenFile string
	// Timeout bounds one request, body included (--kubelet-request-timeout). Zero means 10s.
	Timeout time.Duration
	// MaxBodyBytes caps a response body after decompression (--kubelet-max-response-size).
	// Zero means 8 MiB.
	MaxBodyBytes int64
	// MaxBytesInFlight bounds the memory of all fetches at once (--kubelet-max-bytes-in-flight):
	// each reserves MaxBodyBytes of it from when its response headers arrive until its body is
	// read and decoded, waiting (within its timeout) while the reservations of the others leave
	// too little. At least MaxBodyBytes. Zero means 256 MiB, or MaxBodyBytes if that is more.
	MaxBytesInFlight int64
}

// Validate reports every problem with c.
func (c KubeletConfig) Validate() error {
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("kubelet port %d out of range [0, 65535]", c.Port))
	}
	for _, t := range c.PreferredAddressTypes {
		if !slices.Contains(DefaultAddressTypes, t) {
			errs = append(errs, fmt.Errorf("unknown node address type %q", t))
		}
	}
	if c.InsecureTLS && c.CAFile != "" {
		errs = append(errs, errors.New("kubelet CA file and insecure TLS are mutually exclusive"))
	}
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		errs = append(errs, errors.New("kubelet client certificate and key must be set together"))
	}
	if c.BearerToken != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("kubelet bearer token and token file are mutually exclusive"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("kubelet request timeout %v is negative", c.Timeout))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("kubelet max body bytes %d is negative", c.MaxBodyBytes))
	}
	if c.MaxBytesInFlight < 0 {
		errs = append(errs, fmt.Errorf("kubelet max bytes in flight %d is negative", c.MaxBytesInFlight))
	} else if body := cmp.Or(c.MaxBodyBytes, defaultMaxBodyBytes); c.MaxBytesInFlight > 0 && c.MaxBytesInFlight < body {
		errs = append(errs, fmt.Errorf("kubelet max bytes in flight %d is less than the max body bytes %d: no body could be read", c.MaxBytesInFlight, body))
	}
	return errors.Join(errs...)
}

func (c KubeletConfig) withDefaults() KubeletConfig {
	if c.Port == 0 {
		c.Port = defaultKubeletPort
	}
	if len(c.PreferredAddressTypes) == 0 {
		c.PreferredAddressTypes = DefaultAddressTypes
	}
	if c.Timeout == 0 {
		c.Timeout = defaultKubeletTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.MaxBytesInFlight == 0 {
		c.MaxBytesInFlight = max(defaultMaxBytesInFlight, c.MaxBodyBytes)
	}
	return c
}

// StatusError is a kubelet answer other than 200 OK.
type StatusError struct {
	Code   int
	Status string // e.g. "404 Not Found"
}

func (e *StatusError) Error() string { return "kubelet answered " + e.Status }

// ErrBodyTooLarge is wrapped by the error for a response larger than MaxBodyBytes.
var ErrBodyTooLarge = errors.New("response too large")

// errNoAddress is wrapped when a node has no address of a preferred type or an unusable port or path.
var errNoAddress = errors.New("no usable kubelet address")

// errDecode is wrapped around Decode's errors by Fetch.
var errDecode = errors.New("decode")

// KubeletClient fetches /metrics/resource from kubelets over one shared, verified-by-default
// HTTPS transport. It is safe for concurrent use.
type KubeletClient struct {
	cfg       KubeletConfig
	client    *http.Client
	transport *http.Transport // under client's credential wrappers, which hide its CloseIdleConnections
	// inFlight holds MaxBytesInFlight; each body being read and decoded reserves MaxBodyBytes.
	inFlight *semaphore.Weighted
}

var _ Fetcher = (*KubeletClient)(nil)

// NewKubeletClient validates cfg, loads its CA and credentials, and builds the transport.
// The TLS configuration and the credential reloading are client-go's (transport.Config):
// the client key pair is re-read at every handshake (at most once a second), the token
// file every minute. No bearer token is sent with InsecureTLS (log warns once) nor beside a
// client key pair (the certificate is preferred), and redirects are not followed.
func NewKubeletClient(cfg KubeletConfig, log *slog.Logger) (*KubeletClient, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	tc := &transport.Config{
		TLS: transport.TLSConfig{
			Insecure: cfg.InsecureTLS,
			CAFile:   cfg.CAFile,
			CertFile: cfg.ClientCertFile,
			KeyFile:  cfg.ClientKeyFile,
		},
		BearerToken:     cfg.BearerToken,
		BearerTokenFile: cfg.TokenFile,
	}
	switch {
	case cfg.InsecureTLS && tc.HasTokenAuth():
		log.Warn("kubelet serving certificates are not verified (--kubelet-insecure-tls): the bearer token is not sent to kubelets")
		tc.BearerToken, tc.BearerTokenFile = "", ""
	case tc.HasCertAuth() && tc.HasTokenAuth():
		// A bearer token can be replayed by whoever receives it, a client certificate
		// cannot: with both, kubelets get only the certificate.
		log.Info("kubelets are sent the client certificate; the bearer token is not sent to them")
		tc.BearerToken, tc.BearerTokenFile = "", ""
	}
	tlsCfg, err := transport.TLSConfigFor(tc)
	if err != nil {
		return nil, fmt.Errorf("kubelet TLS: %w", err)
	}
	if tlsCfg == nil { // no CA, no key pair: the system roots verify kubelets
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.HasCertAuth() {
		// client-go loads the pair at the first handshake; fail here instead, with its error.
		if _, err := tlsCfg.GetClientCertificate(nil); err != nil {
			return nil, fmt.Errorf("load kubelet client key pair: %w", err)
		}
	}

	tr := &http.Transport{
		// As metrics-server (client-go): honour HTTPS_PROXY/NO_PROXY.
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		// One kept-alive connection per kubelet saves a TLS handshake per node and tick; the
		// number of kubelets is the only bound that makes sense.
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	// The bearer token, re-read from TokenFile by client-go's cached file token source.
	rt, err := transport.HTTPWrappersForConfig(tc, tr)
	if err != nil {
		return nil, fmt.Errorf("kubelet token file: %w", err)
	}
	return &KubeletClient{
		cfg: cfg,
		client: &http.Client{
			Transport: rt,
			// A kubelet never redirects. Following one would send the token elsewhere: client-go's
			// bearer round tripper sets Authorization on every request, so net/http's stripping
			// of it on a redirect to another host would not help.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		transport: tr,
		inFlight:  semaphore.NewWeighted(cfg.MaxBytesInFlight),
	}, nil
}

// Close releases idle connections. The client stays usable.
func (kc *KubeletClient) Close() { kc.transport.CloseIdleConnections() }

// URL returns where node's resource metrics are fetched from:
// https://<first preferred address>:<port><path>, the path taken from the node's
// ResourceMetricsPathAnnotation when set.
func (kc *KubeletClient) URL(node *corev1.Node) (*url.URL, error) {
	addr := ""
	for _, t := range kc.cfg.PreferredAddressTypes {
		for _, a := range node.Status.Addresses {
			if a.Type == t && a.Address != "" {
				addr = a.Address
				break
			}
		}
		if addr != "" {
			break
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("%w: node %s has no address of type %v", errNoAddress, node.Name, kc.cfg.PreferredAddressTypes)
	}
	port := kc.cfg.Port
	if p := node.Status.DaemonEndpoints.KubeletEndpoint.Port; kc.cfg.UseNodeStatusPort && p != 0 {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("%w: node %s reports kubelet port %d", errNoAddress, node.Name, p)
		}
		port = int(p)
	}
	path := DefaultResourceMetricsPath
	if p, ok := node.Annotations[ResourceMetricsPathAnnotation]; ok && p != "" {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%w: node %s annotation %s=%q is not an absolute path", errNoAddress, node.Name, ResourceMetricsPathAnnotation, p)
		}
		path = p
	}
	// url.URL escapes a '?' or '#' in Path, so an annotation cannot add a query or change the host.
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(addr, strconv.Itoa(port)), Path: path}, nil
}

// Fetch scrapes node once, within the configured timeout, and decodes the body. The result has
// Node set, ScrapeTime set to when the request was sent, and no pod UIDs.
func (kc *KubeletClient) Fetch(ctx context.Context, node *corev1.Node) (tsdb.NodeScrape, error) {
	u, err := kc.URL(node)
	if err != nil {
		return tsdb.NodeScrape{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, kc.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return tsdb.NodeScrape{}, fmt.Errorf("%w: %w", errNoAddress, err)
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("User-Agent", "hindsight")

	scrapeTime := time.Now()
	resp, err := kc.client.Do(req)
	if err != nil {
		return tsdb.NodeScrape{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return tsdb.NodeScrape{}, &StatusError{Code: resp.StatusCode, Status: resp.Status}
	}
	// Reserve the most this body and its decoding may hold before reading a byte of it, so
	// that the bodies of all nodes together stay within MaxBytesInFlight. The request's
	// timeout bounds the wait; a failed wait counts as a timeout.
	if err := kc.inFlight.Acquire(ctx, kc.cfg.MaxBodyBytes); err != nil {
		return tsdb.NodeScrape{}, fmt.Errorf("wait for %d bytes of body budget: %w", kc.cfg.MaxBodyBytes, err)
	}
	defer kc.inFlight.Release(kc.cfg.MaxBodyBytes)
	// The transport decompresses gzip transparently, so the limit applies to decoded bytes.
	body, err := io.ReadAll(io.LimitReader(resp.Body, kc.cfg.MaxBodyBytes+1))
	if err != nil {
		return tsdb.NodeScrape{}, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > kc.cfg.MaxBodyBytes {
		return tsdb.NodeScrape{}, fmt.Errorf("%w: response larger than %d bytes", ErrBodyTooLarge, kc.cfg.MaxBodyBytes)
	}
	ns, err := Decode(body, resp.Header.Get("Content-Type"), scrapeTime)
	if err != nil {
		return tsdb.NodeScrape{}, fmt.Errorf("%w: %w", errDecode, err)
	}
	ns.Node = node.Name
	return ns, nil
}
