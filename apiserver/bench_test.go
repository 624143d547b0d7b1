package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// fleetFixture is metrics-server's scale-test shape: nodes × podsPerNode Running pods of two
// containers each, in 10 namespaces, every one with a window.
func fleetFixture(b testing.TB, nodes, podsPerNode int) *fixture {
	b.Helper()
	ts := time.Now().Add(-5 * time.Second).Truncate(time.Second)
	nodeIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	podIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	src := &fakeSource{nodes: map[string]tsdb.NodeUsage{}, pods: map[tsdb.PodRef]tsdb.PodUsage{}}
	u := tsdb.Usage{Timestamp: ts, Window: 15 * time.Second, CPUNanoCores: 123_456_789, MemoryBytes: 345 << 20}
	for i := range nodes {
		name := fmt.Sprintf("node-%05d", i)
		if err := nodeIdx.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}); err != nil {
			b.Fatal(err)
		}
		src.nodes[name] = tsdb.NodeUsage{Node: name, Usage: u}
		for j := range podsPerNode {
			ref := tsdb.PodRef{Namespace: fmt.Sprintf("ns-%d", (i*podsPerNode+j)%10), Name: fmt.Sprintf("dep-%03d-5d8f7c9b6-%05d", j, i)}
			if err := podIdx.Add(&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, Labels: map[string]string{"app": ref.Name[:7], "pod-template-hash": "5d8f7c9b6"}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			}); err != nil {
				b.Fatal(err)
			}
			src.pods[ref] = tsdb.PodUsage{PodRef: ref, Timestamp: ts, Window: u.Window,
				Containers: []tsdb.ContainerUsage{{Name: "app", Usage: u}, {Name: "proxy", Usage: u}}}
		}
	}
	return &fixture{ts: ts, source: src, nodes: corev1listers.NewNodeLister(nodeIdx), pods: corev1listers.NewPodLister(podIdx)}
}

// BenchmarkList: a LIST of every pod's and every node's metrics at 1,000 nodes × 30 pods,
// through the whole server (TLS, authentication, authorization, conversion, encoding), as
// JSON and as protobuf (kubectl's default). Reported: items/s and bytes per response.
func BenchmarkList(b *testing.B) {
	const nodes, podsPerNode = 1000, 30
	f := fleetFixture(b, nodes, podsPerNode)
	ts := startServer(b, f)
	ts.ready.Store(true)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ts.caData) {
		b.Fatal("no CA certificate")
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, res := range []struct {
		name  string
		items int
	}{{"pods", nodes * podsPerNode}, {"nodes", nodes}} {
		for _, enc := range []struct{ name, accept string }{{"json", "application/json"}, {"protobuf", "application/vnd.kubernetes.protobuf"}} {
			b.Run(res.name+"/"+enc.name, func(b *testing.B) {
				var size int
				for b.Loop() {
					req, err := http.NewRequest(http.MethodGet, ts.url+"/apis/metrics.k8s.io/v1beta1/"+res.name, nil)
					if err != nil {
						b.Fatal(err)
					}
					req.Header.Set("Authorization", "Bearer admin")
					req.Header.Set("Accept", enc.accept)
					resp, err := hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					body, err := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Fatalf("%s: %v %.200s", resp.Status, err, body)
					}
					size = len(body)
				}
				b.ReportMetric(float64(res.items)*float64(b.N)/b.Elapsed().Seconds(), "items/s")
				b.ReportMetric(float64(size), "bytes/list")
			})
		}
	}
}
