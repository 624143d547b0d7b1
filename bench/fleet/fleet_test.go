package fleet

import (
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hindsight-metrics/hindsight/scraper"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

var epoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func testSpec() Spec {
	return Spec{Nodes: 3, PodsPerNode: 30, Epoch: epoch}.WithDefaults()
}

// TestBodyDecodes: every body the fleet writes is one the scraper's decoder takes whole,
// with every pod and container, and the counters behave as a kubelet's do over two weeks
// of ten-minute steps: CPU never decreases except at a restart, when the start time moves on
// and the counter starts again below its old value.
func TestBodyDecodes(t *testing.T) {
	s := testSpec()
	n := s.Node(1)
	type key struct{ pod, container string }
	last := map[key]tsdb.ContainerSample{}
	lastPod := map[string]float64{}
	var lastNode float64
	restarts := 0
	for tick := epoch.Add(-time.Hour); tick.Before(epoch.Add(14 * 24 * time.Hour)); tick = tick.Add(10 * time.Minute) {
		body := n.Append(nil, tick)
		ns, err := scraper.Decode(body, "text/plain; version=0.0.4", tick)
		if err != nil {
			t.Fatalf("at %s: %v\n%s", tick, err, body)
		}
		if got, want := len(ns.Pods), s.PodsPerNode; got != want {
			t.Fatalf("at %s: %d pods, want %d", tick, got, want)
		}
		if got, want := len(ns.Containers), s.PodsPerNode*s.ContainersPerPod; got != want {
			t.Fatalf("at %s: %d containers, want %d", tick, got, want)
		}
		cpu, _ := ns.NodeSample.Get(tsdb.ResourceCPU)
		if !ns.HasNode || cpu <= lastNode {
			t.Fatalf("at %s: node CPU %v after %v (has node %v)", tick, cpu, lastNode, ns.HasNode)
		}
		lastNode = cpu
		for _, p := range ns.Pods {
			v, _ := p.Get(tsdb.ResourceCPU)
			if v <= lastPod[p.Pod] {
				t.Fatalf("at %s: pod %s CPU %v after %v", tick, p.Pod, v, lastPod[p.Pod])
			}
			lastPod[p.Pod] = v
		}
		for _, c := range ns.Containers {
			k := key{c.Pod, c.Container}
			v, _ := c.Get(tsdb.ResourceCPU)
			m, _ := c.Get(tsdb.ResourceMemory)
			if v <= 0 || m <= 0 || c.StartTime.After(c.Time) {
				t.Fatalf("at %s: %s/%s cpu %v memory %v start %s sample %s", tick, c.Pod, c.Container, v, m, c.StartTime, c.Time)
			}
			if prev, ok := last[k]; ok {
				pv, _ := prev.Get(tsdb.ResourceCPU)
				switch {
				case c.StartTime.Equal(prev.StartTime) && v <= pv:
					t.Fatalf("at %s: %s/%s CPU %v after %v without a restart", tick, c.Pod, c.Container, v, pv)
				case c.StartTime.Before(prev.StartTime):
					t.Fatalf("at %s: %s/%s start time went back", tick, c.Pod, c.Container)
				case c.StartTime.After(prev.StartTime):
					restarts++
					if v >= pv {
						t.Fatalf("at %s: %s/%s restarted but CPU %v ≥ %v", tick, c.Pod, c.Container, v, pv)
					}
				}
			}
			last[k] = c
		}
	}
	// 60 containers restarting every 1 to 7 days: two weeks hold about 230 restarts.
	if restarts < 100 || restarts > 500 {
		t.Errorf("%d restarts in two weeks of 60 containers, want between 100 and 500", restarts)
	}
}

// TestSameEverywhere: two processes (here two NodeBody values) with the same spec write the
// same bytes for the same moment, and a moment within one housekeeping tick writes the
// same body.
func TestSameEverywhere(t *testing.T) {
	s := testSpec()
	at := epoch.Add(3*time.Hour + 1234*time.Millisecond)
	a, b := string(s.Node(2).Append(nil, at)), string(s.Node(2).Append(nil, at))
	if a != b {
		t.Fatal("two writers of node 2 disagree")
	}
	tick := Tick(2, at)
	if c := string(s.Node(2).Append(nil, tick.Add(HousekeepingInterval-time.Millisecond))); c != a {
		t.Error("a moment later in the same tick wrote another body")
	}
	if d := string(s.Node(2).Append(nil, tick.Add(HousekeepingInterval))); d == a {
		t.Error("the next tick wrote the same body")
	}
}

func TestNamesUnique(t *testing.T) {
	s := Spec{Nodes: 5000, PodsPerNode: 30, Epoch: epoch}.WithDefaults()
	seen := make(map[string]bool, s.Pods())
	for g := range s.Pods() {
		p := s.Pod(g)
		k := p.Namespace + "/" + p.Name
		if seen[k] {
			t.Fatalf("pod %d: %s twice", g, k)
		}
		seen[k] = true
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []Spec{
		{Nodes: 0, PodsPerNode: 30, Epoch: epoch},
		{Nodes: 1, PodsPerNode: 300, Epoch: epoch},
		{Nodes: 1, PodsPerNode: 30},
		{Nodes: 1, PodsPerNode: 30, Namespaces: 10, Deployments: 5, Epoch: epoch},
	} {
		if err := s.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

// TestServe: each node's port answers its own body over TLS, gzipped when asked, and a
// second request within the tick reuses the built body.
func TestServe(t *testing.T) {
	s := testSpec()
	srv, err := Listen(s, selfSigned(t))
	if err != nil {
		t.Fatal(err)
	}
	at := epoch.Add(time.Hour)
	srv.now = func() time.Time { return at }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // a test's own self-signed certificate
		DisableCompression: true,
	}}
	get := func(port int, gz bool) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics/resource", port), nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		if gz {
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatal("asked for gzip, got none")
			}
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, port := range srv.Ports() {
		var i int
		if _, err := fmt.Sscanf(name, "fleet-%d", &i); err != nil {
			t.Fatal(err)
		}
		want := string(s.Node(i).Append(nil, at))
		if got := string(get(port, false)); got != want {
			t.Errorf("%s: plain body differs from the node's", name)
		}
		if got := string(get(port, true)); got != want {
			t.Errorf("%s: gzipped body differs from the node's", name)
		}
	}
	if req, builds := srv.Counts(); req != 6 || builds != 3 {
		t.Errorf("requests %d, bodies built %d; want 6 and 3", req, builds)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// BenchmarkNodeBody: building one node's body of 30 pods × 2 containers, the fleet's cost
// per node and tick (the fleet process builds each body once per tick).
func BenchmarkNodeBody(b *testing.B) {
	s := Spec{Nodes: 1, PodsPerNode: 30, Epoch: epoch}.WithDefaults()
	n := s.Node(0)
	var buf []byte
	at := epoch.Add(time.Hour)
	for b.Loop() {
		buf = n.Append(buf[:0], at)
		at = at.Add(HousekeepingInterval)
	}
	b.ReportMetric(float64(len(buf)), "bytes/body")
}
