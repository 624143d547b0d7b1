package scraper

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current decoder")

// testScrapeTime is the request time the golden files are decoded with.
var testScrapeTime = time.Date(2021, 10, 3, 9, 37, 0, 123456789, time.UTC)

const kubeletContentType = "text/plain; version=0.0.4; charset=utf-8"

// golden is what testdata/<name>.golden.json holds for testdata/<name>.txt.
type golden struct {
	Error  string      `json:",omitempty"`
	Scrape *scrapeJSON `json:",omitempty"`
}

// scrapeJSON is a tsdb.NodeScrape as the golden files spell it: a stable layout, so that
// they do not change with the shape of tsdb.Sample. A resource that gets a series adds
// its field to sampleJSON (and to the golden files, with go test -update).
type scrapeJSON struct {
	Node       string
	ScrapeTime time.Time
	NodeSample sampleJSON
	HasNode    bool
	Pods       []podJSON
	Containers []containerJSON
}

type sampleJSON struct {
	Time                               time.Time
	CPUSeconds, MemoryBytes, SwapBytes float64
	HasSwap                            bool
}

type podJSON struct {
	Namespace, Pod, UID string
	sampleJSON
}

type containerJSON struct {
	Namespace, Pod, Container, UID string
	StartTime                      time.Time
	sampleJSON
}

func toSampleJSON(s tsdb.Sample) sampleJSON {
	return sampleJSON{
		Time: s.Time, CPUSeconds: s.Values[tsdb.ResourceCPU], MemoryBytes: s.Values[tsdb.ResourceMemory],
		SwapBytes: s.Values[tsdb.ResourceSwap], HasSwap: s.Present.Has(tsdb.ResourceSwap),
	}
}

func toScrapeJSON(ns tsdb.NodeScrape) *scrapeJSON {
	out := &scrapeJSON{Node: ns.Node, ScrapeTime: ns.ScrapeTime, NodeSample: toSampleJSON(ns.NodeSample), HasNode: ns.HasNode}
	for _, p := range ns.Pods {
		out.Pods = append(out.Pods, podJSON{p.Namespace, p.Pod, p.UID, toSampleJSON(p.Sample)})
	}
	for _, c := range ns.Containers {
		out.Containers = append(out.Containers, containerJSON{c.Namespace, c.Pod, c.Container, c.UID, c.StartTime, toSampleJSON(c.Sample)})
	}
	return out
}

// withSwap returns s with a swap reading.
func withSwap(s tsdb.Sample, swapBytes float64) tsdb.Sample {
	s.Set(tsdb.ResourceSwap, swapBytes)
	return s
}

// cpuMem returns a reading of CPU and memory.
func cpuMem(ts time.Time, cpuSeconds, memBytes float64) tsdb.Sample {
	s := tsdb.Sample{Time: ts}
	s.Set(tsdb.ResourceCPU, cpuSeconds)
	s.Set(tsdb.ResourceMemory, memBytes)
	return s
}

func TestDecodeGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var got golden
			ns, err := Decode(body, kubeletContentType, testScrapeTime)
			if err != nil {
				got.Error = err.Error()
			} else {
				got.Scrape = toScrapeJSON(ns)
			}
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./scraper -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
				t.Errorf("Decode(%s) differs from %s (-want +got):\n%s", f, path, diff)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	scrapeTime := time.Date(2077, 7, 7, 7, 7, 7, 7_654_321, time.UTC)
	defaultTime := time.Date(2077, 7, 7, 7, 7, 7, 7_000_000, time.UTC) // truncated to ms
	ms := func(v int64) time.Time { return time.UnixMilli(v).UTC() }
	const coredns = `{container="coredns",namespace="kube-system",pod="coredns"}`

	tests := []struct {
		name        string
		contentType string
		body        string
		want        tsdb.NodeScrape
		wantErr     string
	}{
		{
			name: "timestamps fall back to the scrape time",
			body: "node_cpu_usage_seconds_total 357.35491\nnode_memory_working_set_bytes 1.616273408e+09\n" +
				"container_cpu_usage_seconds_total" + coredns + " 4.710169\n" +
				"container_memory_working_set_bytes" + coredns + " 1.253376e+07\n" +
				"container_start_time_seconds" + coredns + " 1.633252712e+9\n",
			want: tsdb.NodeScrape{
				ScrapeTime: scrapeTime,
				HasNode:    true,
				NodeSample: cpuMem(defaultTime, 357.35491, 1.616273408e+09),
				Containers: []tsdb.ContainerSample{{
					Namespace: "kube-system", Pod: "coredns", Container: "coredns",
					StartTime: time.Date(2021, 10, 3, 9, 18, 32, 0, time.UTC),
					Sample:    cpuMem(defaultTime, 4.710169, 1.253376e+07),
				}},
			},
		},
		{
			// metrics-server gives a point the timestamp of its last series in the body.
			name: "the last series of a point sets its timestamp",
			body: "node_memory_working_set_bytes 2 2000\nnode_cpu_usage_seconds_total 1 1000\n" +
				"container_cpu_usage_seconds_total" + coredns + " 1 1000\n" +
				"container_memory_working_set_bytes" + coredns + " 2 2000\n" +
				"container_swap_usage_bytes" + coredns + " 3 3000\n" +
				"container_start_time_seconds" + coredns + " 1 4000\n",
			want: tsdb.NodeScrape{
				ScrapeTime: scrapeTime,
				HasNode:    true,
				NodeSample: cpuMem(ms(1000), 1, 2),
				Containers: []tsdb.ContainerSample{{
					Namespace: "kube-system", Pod: "coredns", Container: "coredns",
					StartTime: time.Unix(1, 0).UTC(),
					Sample:    withSwap(cpuMem(ms(3000), 1, 2), 3),
				}},
			},
		},
		{
			name: "a container without memory drops its whole pod but not the pod sample",
			body: `container_cpu_usage_seconds_total{container="a",namespace="ns",pod="p"} 1 1000
container_memory_working_set_bytes{container="a",namespace="ns",pod="p"} 1 1000
container_cpu_usage_seconds_total{container="b",namespace="ns",pod="p"} 1 1000
container_cpu_usage_seconds_total{container="c",namespace="ns",pod="q"} 1 1000
container_memory_working_set_bytes{container="c",namespace="ns",pod="q"} 1 1000
pod_cpu_usage_seconds_total{namespace="ns",pod="p"} 2 1000
pod_memory_working_set_bytes{namespace="ns",pod="p"} 2 1000
pod_cpu_usage_seconds_total{namespace="ns",pod="q"} 2 1000
`,
			want: tsdb.NodeScrape{
				ScrapeTime: scrapeTime,
				Pods:       []tsdb.PodSample{{Namespace: "ns", Pod: "p", Sample: cpuMem(ms(1000), 2, 2)}},
				Containers: []tsdb.ContainerSample{{Namespace: "ns", Pod: "q", Container: "c", Sample: cpuMem(ms(1000), 1, 1)}},
			},
		},
		{
			name: "a node without memory is not reported",
			body: "node_cpu_usage_seconds_total 1 1000\n",
			want: tsdb.NodeScrape{ScrapeTime: scrapeTime},
		},
		{
			name: "zero values are reported raw",
			body: "node_cpu_usage_seconds_total 0\nnode_memory_working_set_bytes 0\n",
			want: tsdb.NodeScrape{ScrapeTime: scrapeTime, HasNode: true, NodeSample: cpuMem(defaultTime, 0, 0)},
		},
		{
			name: "a start time of zero or below is not reported",
			body: "container_cpu_usage_seconds_total" + coredns + " 1 1000\n" +
				"container_memory_working_set_bytes" + coredns + " 1 1000\n" +
				"container_start_time_seconds" + coredns + " -6.7953645788713455e+09\n",
			want: tsdb.NodeScrape{
				ScrapeTime: scrapeTime,
				Containers: []tsdb.ContainerSample{{Namespace: "kube-system", Pod: "coredns", Container: "coredns", Sample: cpuMem(ms(1000), 1, 1)}},
			},
		},
		{
			name: "labels are parsed, not searched",
			body: `container_cpu_usage_seconds_total{pod="p",container="c",namespace="ns",extra="pod=\"x\""} 1 1000
container_memory_working_set_bytes{namespace="ns",pod="p",container="c"} 1 1000
`,
			want: tsdb.NodeScrape{
				ScrapeTime: scrapeTime,
				Containers: []tsdb.ContainerSample{{Namespace: "ns", Pod: "p", Container: "c", Sample: cpuMem(ms(1000), 1, 1)}},
			},
		},
		{
			name:        "OpenMetrics",
			contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8",
			body:        "# TYPE node_cpu_usage_seconds counter\nnode_cpu_usage_seconds_total 1 1.5\nnode_memory_working_set_bytes 2 1.5\n# EOF\n",
			want:        tsdb.NodeScrape{ScrapeTime: scrapeTime, HasNode: true, NodeSample: cpuMem(ms(1500), 1, 2)},
		},
		{
			name:        "an unknown content type is read as text",
			contentType: "application/json",
			body:        "node_cpu_usage_seconds_total 1 1000\nnode_memory_working_set_bytes 2 1000\n",
			want:        tsdb.NodeScrape{ScrapeTime: scrapeTime, HasNode: true, NodeSample: cpuMem(ms(1000), 1, 2)},
		},
		{name: "empty", body: "", wantErr: ErrNoSamples.Error()},
		{name: "only other series", body: "# comment\nresource_scrape_error 1\n", wantErr: ErrNoSamples.Error()},
		{name: "truncated", body: "node_cpu_usage_seconds_total 1 1000\nnode_memory_working_set_bytes 1.6", wantErr: "truncated body"},
		{name: "OpenMetrics without EOF", contentType: "application/openmetrics-text; version=1.0.0", body: "node_cpu_usage_seconds_total 1\n", wantErr: "# EOF"},
		{name: "protobuf", contentType: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited", body: "x", wantErr: "unsupported content type"},
		{name: "garbage", body: "node_cpu_usage_seconds_total{\n", wantErr: "parse"},
		{name: "NaN", body: "node_cpu_usage_seconds_total NaN\n", wantErr: "invalid value"},
		{name: "Inf", body: "node_memory_working_set_bytes +Inf\n", wantErr: "invalid value"},
		{name: "negative CPU", body: "container_cpu_usage_seconds_total" + coredns + " -1\n", wantErr: "negative value"},
		{name: "negative swap", body: "pod_swap_usage_bytes{namespace=\"a\",pod=\"b\"} -1\n", wantErr: "negative value"},
		{name: "NaN start time", body: "container_start_time_seconds" + coredns + " NaN\n", wantErr: "invalid value"},
		{name: "start time out of range", body: "container_start_time_seconds" + coredns + " 1e300\n", wantErr: "out of range"},
		{name: "zero timestamp", body: "node_cpu_usage_seconds_total 1 0\n", wantErr: "invalid timestamp"},
		{name: "negative timestamp", body: "node_cpu_usage_seconds_total 1 -62135596800000\n", wantErr: "parse"},
		{name: "missing container label", body: `container_cpu_usage_seconds_total{namespace="a",pod="b"} 1` + "\n", wantErr: "without container label"},
		{name: "empty pod label", body: `pod_cpu_usage_seconds_total{namespace="a",pod=""} 1` + "\n", wantErr: "without namespace or pod label"},
		{name: "duplicate node series", body: "node_cpu_usage_seconds_total 1\nnode_cpu_usage_seconds_total{x=\"y\"} 2\n", wantErr: "duplicate series"},
		{name: "duplicate container series", body: "container_memory_working_set_bytes" + coredns + " 1\ncontainer_memory_working_set_bytes" + coredns + " 1\n", wantErr: "duplicate series"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ct := tc.contentType
			if ct == "" {
				ct = kubeletContentType
			}
			got, err := Decode([]byte(tc.body), ct, scrapeTime)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode() error = %v, want one containing %q", err, tc.wantErr)
				}
				if diff := cmp.Diff(tsdb.NodeScrape{}, got); diff != "" {
					t.Errorf("Decode() returned a partial result with its error (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeDoesNotWriteIntoSpareCapacity(t *testing.T) {
	t.Parallel()
	body := make([]byte, 0, 128)
	body = append(body, "node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 1\n"...)
	spare := body[:cap(body)]
	spare[len(body)] = 'x'
	if _, err := Decode(body, kubeletContentType, testScrapeTime); err != nil {
		t.Fatal(err)
	}
	if spare[len(body)] != 'x' {
		t.Error("Decode wrote past len(body)")
	}
}

func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, kubeletContentType)
	}
	f.Add([]byte("node_cpu_usage_seconds_total 1 1.5\n# EOF\n"), "application/openmetrics-text; version=1.0.0")
	f.Add([]byte(`container_cpu_usage_seconds_total{"container"="c",namespace="n",pod="p"} -0`+"\n"), "")
	f.Add([]byte(`pod_cpu_usage_seconds_total{namespace="`+strings.Repeat("n", MaxNamespaceLen+1)+`",pod="p"} 1`+"\n"), "")
	f.Add([]byte(fmt.Sprintf("node_cpu_usage_seconds_total 1 %d\nnode_memory_working_set_bytes 1 %d\n",
		testScrapeTime.Add(3*time.Hour).UnixMilli(), testScrapeTime.UnixMilli())), kubeletContentType)
	f.Add(genKubeletBody(MaxPodsPerNode+1, 1), kubeletContentType)
	f.Add(genKubeletBody(1, MaxContainersPerPod+1), kubeletContentType)

	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		ns, err := Decode(body, contentType, testScrapeTime)
		if errors.Is(err, errDecodePanic) {
			t.Fatalf("parser panicked: %v", err)
		}
		if err != nil {
			if ns.Node != "" || !ns.ScrapeTime.IsZero() || ns.HasNode || ns.NodeSample != (tsdb.Sample{}) || ns.Pods != nil || ns.Containers != nil {
				t.Fatalf("partial result with error %v: %+v", err, ns)
			}
			return
		}
		if !ns.ScrapeTime.Equal(testScrapeTime) {
			t.Errorf("ScrapeTime = %v, want %v", ns.ScrapeTime, testScrapeTime)
		}
		checkSample := func(what string, s tsdb.Sample) {
			t.Helper()
			for r, v := range s.Values {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					t.Errorf("%s: invalid value in %+v", what, s)
				}
				if !s.Present.Has(tsdb.Resource(r)) && v != 0 {
					t.Errorf("%s: %s value without its presence bit: %+v", what, tsdb.Resource(r), s)
				}
			}
			if s.Present.Has(tsdb.ResourceStartTime) {
				t.Errorf("%s: start time among the values: %+v", what, s)
			}
			if s.Time.UnixMilli() <= 0 {
				t.Errorf("%s: invalid time %v", what, s.Time)
			}
		}
		if ns.HasNode {
			checkSample("node", ns.NodeSample)
		} else if ns.NodeSample != (tsdb.Sample{}) {
			t.Errorf("node sample %+v without HasNode", ns.NodeSample)
		}
		for _, p := range ns.Pods {
			if p.Namespace == "" || p.Pod == "" {
				t.Errorf("pod without name: %+v", p)
			}
			checkSample("pod "+p.Namespace+"/"+p.Pod, p.Sample)
		}
		for _, c := range ns.Containers {
			if c.Namespace == "" || c.Pod == "" || c.Container == "" {
				t.Errorf("container without name: %+v", c)
			}
			if !c.StartTime.IsZero() && c.StartTime.UnixNano() <= 0 {
				t.Errorf("container %+v: start time not after the epoch", c)
			}
			checkSample("container "+c.Namespace+"/"+c.Pod+"/"+c.Container, c.Sample)
		}
		// The caps bound every result.
		if len(ns.Pods) > MaxPodsPerNode {
			t.Errorf("%d pods, more than MaxPodsPerNode", len(ns.Pods))
		}
		perPod := map[[2]string]int{}
		for _, p := range ns.Pods {
			perPod[[2]string{p.Namespace, p.Pod}] += 0
			if len(p.Namespace) > MaxNamespaceLen || len(p.Pod) > MaxPodNameLen {
				t.Errorf("pod %q/%q: name past its limit", p.Namespace, p.Pod)
			}
		}
		for _, c := range ns.Containers {
			k := [2]string{c.Namespace, c.Pod}
			if perPod[k]++; perPod[k] > MaxContainersPerPod {
				t.Errorf("pod %q/%q: more than MaxContainersPerPod containers", c.Namespace, c.Pod)
			}
			if len(c.Namespace) > MaxNamespaceLen || len(c.Pod) > MaxPodNameLen || len(c.Container) > MaxContainerNameLen {
				t.Errorf("container %q/%q/%q: name past its limit", c.Namespace, c.Pod, c.Container)
			}
		}
		if len(perPod) > MaxPodsPerNode {
			t.Errorf("%d distinct pods, more than MaxPodsPerNode", len(perPod))
		}
		// The clock check: a scrape it accepts has no sample past ScrapeTime + bound, and one it
		// refuses is off by more than the bound, with that offset reported.
		res := 15 * time.Second
		bound := tsdb.ClockSkewBound(res)
		if err := tsdb.CheckClock(&ns, res); err != nil {
			var skew *tsdb.ClockSkewError
			if !errors.As(err, &skew) {
				t.Fatalf("CheckClock: %v, not a ClockSkewError", err)
			}
			if skew.Offset.Abs() <= bound || skew.Bound != bound {
				t.Errorf("CheckClock refused offset %v within bound %v (reported %v)", skew.Offset, bound, skew.Bound)
			}
		} else {
			limit := ns.ScrapeTime.Add(bound)
			late := func(what string, at time.Time) {
				if at.After(limit) {
					t.Errorf("CheckClock accepted %s at %v, past scrape time + %v", what, at, bound)
				}
			}
			if ns.HasNode {
				late("node", ns.NodeSample.Time)
			}
			for _, p := range ns.Pods {
				late("pod "+p.Pod, p.Time)
			}
			for _, c := range ns.Containers {
				late("container "+c.Container, c.Time)
			}
		}
		// Round-trips through JSON: no NaN hid anywhere (encoding/json rejects it).
		if _, err := json.Marshal(ns); err != nil {
			t.Errorf("marshal: %v", err)
		}
	})
}

// genKubeletBody renders a kubelet body for pods × containers with timestamps, as a node with
// that many pods serves it.
func genKubeletBody(pods, containers int) []byte {
	var b strings.Builder
	ts := int64(1633253812125)
	family := func(name, typ string, each func(pod, ctr int) string) {
		fmt.Fprintf(&b, "# HELP %s [STABLE] help\n# TYPE %s %s\n", name, name, typ)
		for p := range pods {
			for c := range containers {
				if line := each(p, c); line != "" {
					b.WriteString(line)
				}
			}
		}
	}
	ctr := func(name string, v float64, withTs bool) func(p, c int) string {
		return func(p, c int) string {
			s := fmt.Sprintf(`%s{container="c%d",namespace="ns-%d",pod="deployment-%d-7d4b9c8f6-x2x9q"} %g`, name, c, p%10, p, v+float64(p+c))
			if withTs {
				s += fmt.Sprintf(" %d", ts+int64(p))
			}
			return s + "\n"
		}
	}
	pod := func(name string, v float64) func(p, c int) string {
		return func(p, c int) string {
			if c != 0 {
				return ""
			}
			return fmt.Sprintf(`%s{namespace="ns-%d",pod="deployment-%d-7d4b9c8f6-x2x9q"} %g %d`+"\n", name, p%10, p, v*float64(p+1), ts+int64(p))
		}
	}
	family("container_cpu_usage_seconds_total", "counter", ctr("container_cpu_usage_seconds_total", 4.71, true))
	family("container_memory_working_set_bytes", "gauge", ctr("container_memory_working_set_bytes", 1.25e7, true))
	family("container_start_time_seconds", "gauge", ctr("container_start_time_seconds", 1.6e9, false))
	fmt.Fprintf(&b, "node_cpu_usage_seconds_total 357.35491 %d\nnode_memory_working_set_bytes 1.616273408e+09 %d\n", ts, ts)
	family("pod_cpu_usage_seconds_total", "counter", pod("pod_cpu_usage_seconds_total", 4.7))
	family("pod_memory_working_set_bytes", "gauge", pod("pod_memory_working_set_bytes", 1.26e7))
	b.WriteString("resource_scrape_error 0\n")
	return []byte(b.String())
}

func BenchmarkDecode(b *testing.B) {
	for _, size := range []struct{ pods, containers int }{{30, 2}, {110, 3}} {
		b.Run(fmt.Sprintf("pods=%d/containers=%d", size.pods, size.containers), func(b *testing.B) {
			body := genKubeletBody(size.pods, size.containers)
			ns, err := Decode(body, kubeletContentType, testScrapeTime)
			if err != nil {
				b.Fatal(err)
			}
			if len(ns.Containers) != size.pods*size.containers {
				b.Fatalf("decoded %d containers", len(ns.Containers))
			}
			samples := len(ns.Pods) + len(ns.Containers) + 1
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(body, kubeletContentType, testScrapeTime); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(samples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
