package scraper

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// bodySpec describes a /metrics/resource body as a kubelet renders it.
type bodySpec struct {
	pods, containers int
	// Lengths of every namespace, pod and container name, in bytes.
	nsLen, podLen, ctrLen int
	// namespaces spreads the pods over that many namespaces (at least 1).
	namespaces int
}

// name pads prefix and the decimal i with 'x' to exactly n bytes (n ≥ len(prefix)+digits).
func name(prefix string, i, n int) string {
	s := prefix + strconv.Itoa(i)
	if pad := n - len(s); pad > 0 {
		s = prefix + strings.Repeat("x", pad) + strconv.Itoa(i)
	}
	return s
}

// kubeletFamilies are the HELP and TYPE lines of every family of testdata/kubelet.txt (a real
// kubelet's body, swap series included), in the kubelet's order.
func kubeletFamilies(tb testing.TB) (names []string, header map[string]string) {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", "kubelet.txt"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	header = make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "# HELP ") && !strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		fam := strings.Fields(line)[2]
		if _, ok := header[fam]; !ok {
			names = append(names, fam)
		}
		header[fam] += line + "\n"
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return names, header
}

// genBody renders spec in the kubelet's format: every family of a real kubelet (swap
// included), full-precision values and a millisecond timestamp on every sample but the start
// times, as current kubelets print them.
func genBody(tb testing.TB, spec bodySpec) []byte {
	tb.Helper()
	fams, header := kubeletFamilies(tb)
	nss := max(spec.namespaces, 1)
	var b bytes.Buffer
	ts := int64(1633253812125)
	val := func(i int) string { return strconv.FormatFloat(1234.5678901234567+float64(i)*1.0000001, 'g', -1, 64) }
	for _, fam := range fams {
		b.WriteString(header[fam])
		obj, _, _ := strings.Cut(fam, "_")
		switch obj {
		case "node":
			fmt.Fprintf(&b, "%s %s %d\n", fam, val(0), ts)
		case "pod":
			for p := range spec.pods {
				fmt.Fprintf(&b, "%s{namespace=%q,pod=%q} %s %d\n", fam,
					name("ns-", p%nss, spec.nsLen), name("pod-", p, spec.podLen), val(p), ts+int64(p))
			}
		case "container":
			for p := range spec.pods {
				for c := range spec.containers {
					fmt.Fprintf(&b, "%s{container=%q,namespace=%q,pod=%q} %s", fam,
						name("c-", c, spec.ctrLen), name("ns-", p%nss, spec.nsLen), name("pod-", p, spec.podLen), val(p*c))
					if fam != "container_start_time_seconds" {
						fmt.Fprintf(&b, " %d", ts+int64(p))
					}
					b.WriteByte('\n')
				}
			}
		default: // resource_scrape_error
			fmt.Fprintf(&b, "%s 0\n", fam)
		}
	}
	return b.Bytes()
}

// Realistic names: a 16-byte namespace, a Deployment's 40-byte pod name
// ("checkout-api-7d4b9c8f6-x2x9q" and a bit), a 12-byte container name.
var (
	realistic110 = bodySpec{pods: 110, containers: 4, nsLen: 16, podLen: 40, ctrLen: 12, namespaces: 10}
	// Every name at Kubernetes' limit, 20 containers in each of 110 pods: no 110-pod kubelet
	// can send more (each container reports its five series once).
	longest110 = bodySpec{pods: 110, containers: 20, nsLen: MaxNamespaceLen, podLen: MaxPodNameLen, ctrLen: MaxContainerNameLen, namespaces: 10}
)

// TestDefaultMaxBodyBytes measures the bodies the default response cap is sized from and
// checks the cap admits the largest body a 110-pod node can send.
func TestDefaultMaxBodyBytes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		spec bodySpec
	}{
		{"110 pods × 4 containers, realistic names", realistic110},
		{"110 pods × 20 containers, every name at its limit", longest110},
		{"1,024 pods × 4 containers, realistic names", bodySpec{pods: MaxPodsPerNode, containers: 4, nsLen: 16, podLen: 40, ctrLen: 12, namespaces: 10}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := genBody(t, tt.spec)
			t.Logf("%s: %d bytes (%.2f MiB), %.0f%% of the default cap of %d MiB",
				tt.name, len(body), float64(len(body))/(1<<20), 100*float64(len(body))/defaultMaxBodyBytes, defaultMaxBodyBytes>>20)
			if len(body) > defaultMaxBodyBytes {
				t.Errorf("body of %d bytes exceeds the default cap of %d", len(body), defaultMaxBodyBytes)
			}
			ns, err := Decode(body, kubeletContentType, testScrapeTime)
			if err != nil {
				t.Fatalf("Decode() = %v", err)
			}
			if len(ns.Pods) != tt.spec.pods || len(ns.Containers) != tt.spec.pods*tt.spec.containers {
				t.Errorf("decoded %d pods and %d containers, want %d and %d", len(ns.Pods), len(ns.Containers), tt.spec.pods, tt.spec.pods*tt.spec.containers)
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	t.Parallel()
	ctr := func(ns, pod, c string) string {
		return fmt.Sprintf("container_cpu_usage_seconds_total{container=%q,namespace=%q,pod=%q} 1 1000\n"+
			"container_memory_working_set_bytes{container=%q,namespace=%q,pod=%q} 1 1000\n", c, ns, pod, c, ns, pod)
	}
	podLine := func(ns, pod string) string {
		return fmt.Sprintf("pod_cpu_usage_seconds_total{namespace=%q,pod=%q} 1 1000\npod_memory_working_set_bytes{namespace=%q,pod=%q} 1 1000\n", ns, pod, ns, pod)
	}
	many := func(pods, containers int) string {
		var b strings.Builder
		for p := range pods {
			for c := range containers {
				b.WriteString(ctr("ns", name("p", p, 0), name("c", c, 0)))
			}
		}
		return b.String()
	}
	podsOnly := func(pods int) string {
		var b strings.Builder
		for p := range pods {
			b.WriteString(podLine("ns", name("p", p, 0)))
		}
		return b.String()
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name           string
		body           string
		wantPods       int
		wantContainers int
		wantErr        string
	}{
		{name: "names at their limits", body: ctr(long(MaxNamespaceLen), long(MaxPodNameLen), long(MaxContainerNameLen)) + podLine(long(MaxNamespaceLen), long(MaxPodNameLen)), wantPods: 1, wantContainers: 1},
		{name: "namespace too long", body: ctr(long(MaxNamespaceLen+1), "p", "c"), wantErr: "namespace (64 bytes)"},
		{name: "pod name too long", body: podLine("ns", long(MaxPodNameLen+1)), wantErr: "pod (254 bytes)"},
		{name: "container name too long", body: ctr("ns", "p", long(MaxContainerNameLen+1)), wantErr: "container label of 64 bytes"},
		{name: "containers of one pod at the cap", body: many(1, MaxContainersPerPod), wantContainers: MaxContainersPerPod},
		{name: "one container too many", body: many(1, MaxContainersPerPod+1), wantErr: "more than 64 containers"},
		{name: "pods at the cap", body: many(MaxPodsPerNode, 1), wantContainers: MaxPodsPerNode},
		{name: "pod series at the cap", body: podsOnly(MaxPodsPerNode), wantPods: MaxPodsPerNode},
		{name: "one pod too many", body: many(MaxPodsPerNode, 1) + podLine("ns", "one-more"), wantErr: "more than 1024 pods"},
		{name: "a kubelet rotating 100,000 pod names", body: podsOnly(100_000), wantErr: "more than 1024 pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns, err := Decode([]byte(tt.body), kubeletContentType, testScrapeTime)
			if tt.wantErr != "" {
				if !errors.Is(err, errLimit) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode() = %v, want errLimit mentioning %q", err, tt.wantErr)
				}
				if ns.Pods != nil || ns.Containers != nil {
					t.Errorf("partial result with the error: %d pods, %d containers", len(ns.Pods), len(ns.Containers))
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode() = %v", err)
			}
			if len(ns.Pods) != tt.wantPods || len(ns.Containers) != tt.wantContainers {
				t.Errorf("decoded %d pods, %d containers; want %d, %d", len(ns.Pods), len(ns.Containers), tt.wantPods, tt.wantContainers)
			}
		})
	}
}
