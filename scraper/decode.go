package scraper

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// The series Decode reads from a kubelet's /metrics/resource are those of tsdb.Schema; everything
// else (resource_scrape_error, scrape_error, container_swap_limit_bytes, …) is ignored.

// The kubelet's labels of pod and container series.
const (
	labelNamespace = "namespace"
	labelPod       = "pod"
	labelContainer = "container"
)

const (
	contentTypeText       = "text/plain"
	contentTypeOpenMetric = "application/openmetrics-text"
)

// required are the resources without which metrics-server drops a node, pod or container.
var required = tsdb.ResourceSet(0).With(tsdb.ResourceCPU).With(tsdb.ResourceMemory)

// Caps on what one body may hold. Kubernetes' own name limits bound the label values a real
// kubelet can report; the counts are far above any real node's (the kubelet's default
// --max-pods is 110, managed offerings allow up to about 250, and Kubernetes' scalability
// limits are 110 pods per node), so that only a hostile or broken kubelet reaches them. A body
// past any cap fails the node's scrape (scrape_errors_total{reason="decode"}): no real kubelet
// sends one, and half of a forged body is no better than none.
const (
	// MaxNamespaceLen is the longest namespace label: a namespace is a DNS-1123 label.
	MaxNamespaceLen = validation.DNS1123LabelMaxLength // 63
	// MaxPodNameLen is the longest pod label: a pod name is a DNS-1123 subdomain.
	MaxPodNameLen = validation.DNS1123SubdomainMaxLength // 253
	// MaxContainerNameLen is the longest container label: a container name is a DNS-1123 label.
	MaxContainerNameLen = validation.DNS1123LabelMaxLength // 63
	// MaxPodsPerNode is the most distinct pods (namespace/name, from pod or container series)
	// one body may report.
	MaxPodsPerNode = 1024
	// MaxContainersPerPod is the most distinct containers one pod may report.
	MaxContainersPerPod = 64
)

// errLimit is wrapped by Decode's error for a body past one of the caps above.
var errLimit = errors.New("limit exceeded")

// maxTimestampMs (year 10000) bounds sample timestamps: a later one is hostile, and time.Time
// would no longer marshal.
const maxTimestampMs = 253402300800000

// ErrNoSamples is returned by Decode for a body that carries none of the resource series: an
// empty body, or one with only comments or resource_scrape_error (what a kubelet answers when it
// could not read its own stats). The caller treats it as a failed scrape.
var ErrNoSamples = errors.New("no resource metrics in body")

// errDecodePanic marks a panic inside the third-party parser that Decode turned into an error.
// FuzzDecode fails on it; in production the node just fails this round.
var errDecodePanic = errors.New("parser panic")

// seriesKey identifies one series for duplicate detection; namespace, pod and container are
// empty where the series has no such label.
type seriesKey struct {
	name                      string
	namespace, pod, container string
}

// point accumulates one node, pod or container while the body is read.
type point struct {
	tsMs     int64 // timestamp of the last value series (not start time) read for it
	s        tsdb.Sample
	hasStart bool
	startNs  int64
}

func (p *point) sample() tsdb.Sample {
	s := p.s
	s.Time = time.UnixMilli(p.tsMs).UTC()
	return s
}

func (p *point) complete() bool { return p.s.Present&required == required }

type podKey struct{ namespace, pod string }

type containerKey struct {
	podKey
	container string
}

// Decode parses a kubelet /metrics/resource body (Prometheus text format 0.0.4, or OpenMetrics
// 1.0 when contentType says so; an empty or unknown contentType is read as text) into the
// samples of one node. It fills ScrapeTime with scrapeTime and leaves Node and the pod UIDs
// empty: the caller knows the node and the pods.
//
// Timestamps: a sample without a timestamp (kwok sends none) gets scrapeTime truncated to the
// millisecond. When the CPU, memory and swap series of one node, pod or container carry
// different timestamps, the point gets the timestamp of the last of them in the body, exactly as
// metrics-server v0.9.0 does; kubelets sort families by name, so that is memory's (swap's where
// swap is reported). container_start_time_seconds never sets the timestamp.
//
// Completeness, as metrics-server: the node sample is reported (HasNode) only when both its CPU
// and memory series are present; a pod sample likewise. A container lacking its CPU or memory
// series makes every container of that pod absent from the result, because metrics-server drops
// such a pod and the current window must match it. Values that are present are reported raw,
// zeros included (kwok's first answer is all zeros): the zero-value rules of the current window
// belong to package tsdb.
//
// Decode fails, returning no partial result, on: a body the parser rejects; a text body that does
// not end with a newline (a truncated body); a NaN, infinite or negative CPU, memory or swap value,
// a NaN or infinite start time; a timestamp ≤ 0 or past the year 9999; a container or pod series without its namespace,
// pod or container label; a namespace, pod or container label longer than Kubernetes allows
// (MaxNamespaceLen, MaxPodNameLen, MaxContainerNameLen); more than MaxPodsPerNode pods or more
// than MaxContainersPerPod containers of one pod; the same series twice; and a body with none
// of the resource series (ErrNoSamples). The caps bound the result: at most MaxPodsPerNode pod
// samples and MaxPodsPerNode × MaxContainersPerPod container samples. A start time ≤ 0 is read as "not reported", which is what older kubelets meant by
// it.
func Decode(body []byte, contentType string, scrapeTime time.Time) (_ tsdb.NodeScrape, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errDecodePanic, r)
		}
	}()

	mediaType := contentTypeText
	if mt, params, perr := mime.ParseMediaType(contentType); perr == nil {
		switch mt {
		case contentTypeOpenMetric:
			if params["version"] == "2.0.0" {
				return tsdb.NodeScrape{}, fmt.Errorf("unsupported content type %q", contentType)
			}
			mediaType = contentTypeOpenMetric
		case "application/vnd.google.protobuf":
			return tsdb.NodeScrape{}, fmt.Errorf("unsupported content type %q", contentType)
		}
	}
	if len(body) == 0 {
		return tsdb.NodeScrape{}, ErrNoSamples
	}
	if mediaType == contentTypeText && body[len(body)-1] != '\n' {
		return tsdb.NodeScrape{}, errors.New("truncated body: no newline at end")
	}
	// The text parser appends a newline to the slice it is given; clip it so that never writes
	// into a caller's spare capacity.
	p, err := textparse.New(slices.Clip(body), mediaType, labels.NewSymbolTable(), textparse.ParserOptions{
		OpenMetricsSkipSTSeries: true,
	})
	if p == nil {
		return tsdb.NodeScrape{}, fmt.Errorf("create parser: %w", err)
	}

	// Size the maps for the body up front (a kubelet body has about one series per line, a
	// third of them container series, a sixth pod series): growing them took a quarter of the
	// decode. The sizes are hints, capped at what a full node of 110 pods × 3 containers needs,
	// so a body of empty lines reserves nothing much; past them the maps grow as before.
	lines := bytes.Count(body, []byte{'\n'})
	series, containers, pods := min(lines, 2048), min(lines/3, 512), min(lines/6, 128)
	d := decoder{
		defaultTs:  scrapeTime.UnixMilli(),
		seen:       make(map[seriesKey]struct{}, series),
		pods:       make(map[podKey]*point, pods),
		podRefs:    make(map[podKey]int, pods),
		containers: make(map[containerKey]*point, containers),
	}
	var lbls labels.Labels
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return tsdb.NodeScrape{}, fmt.Errorf("parse: %w", err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		_, ts, v := p.Series()
		p.Labels(&lbls)
		if err := d.add(lbls, ts, v); err != nil {
			return tsdb.NodeScrape{}, err
		}
	}
	if !d.any {
		return tsdb.NodeScrape{}, ErrNoSamples
	}
	return d.result(scrapeTime), nil
}

type decoder struct {
	defaultTs  int64
	any        bool // some resource series was read
	seen       map[seriesKey]struct{}
	node       point
	pods       map[podKey]*point
	containers map[containerKey]*point
	// podRefs counts the distinct containers of every pod named by a pod or container series.
	podRefs map[podKey]int
}

// add records one series. It returns an error for input Decode must reject.
func (d *decoder) add(lbls labels.Labels, ts *int64, v float64) error {
	name := lbls.Get(model.MetricNameLabel)
	def, tracked := tsdb.LookupSeries(name)
	if !tracked {
		return nil
	}

	key := seriesKey{name: name}
	if def.Object != tsdb.ObjectNode {
		key.namespace, key.pod = lbls.Get(labelNamespace), lbls.Get(labelPod)
		if key.namespace == "" || key.pod == "" {
			return fmt.Errorf("series %s without namespace or pod label", name)
		}
		if len(key.namespace) > MaxNamespaceLen || len(key.pod) > MaxPodNameLen {
			return fmt.Errorf("%w: series %s: namespace (%d bytes) or pod (%d bytes) label longer than %d or %d bytes",
				errLimit, name, len(key.namespace), len(key.pod), MaxNamespaceLen, MaxPodNameLen)
		}
	}
	if def.Object == tsdb.ObjectContainer {
		key.container = lbls.Get(labelContainer)
		if key.container == "" {
			return fmt.Errorf("series %s{namespace=%q,pod=%q} without container label", name, key.namespace, key.pod)
		}
		if len(key.container) > MaxContainerNameLen {
			return fmt.Errorf("%w: series %s{namespace=%q,pod=%q}: container label of %d bytes, longer than %d",
				errLimit, name, key.namespace, key.pod, len(key.container), MaxContainerNameLen)
		}
	}
	if _, dup := d.seen[key]; dup {
		return fmt.Errorf("duplicate series %s{namespace=%q,pod=%q,container=%q}", name, key.namespace, key.pod, key.container)
	}
	d.seen[key] = struct{}{}

	tsMs := d.defaultTs
	if ts != nil {
		if *ts <= 0 || *ts >= maxTimestampMs {
			return fmt.Errorf("series %s: invalid timestamp %d", name, *ts)
		}
		tsMs = *ts
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("series %s: invalid value %v", name, v)
	}
	if def.Resource != tsdb.ResourceStartTime && v < 0 {
		return fmt.Errorf("series %s: negative value %v", name, v)
	}

	var pt *point
	switch def.Object {
	case tsdb.ObjectNode:
		pt = &d.node
	case tsdb.ObjectPod:
		k := podKey{key.namespace, key.pod}
		if pt = d.pods[k]; pt == nil {
			if err := d.refPod(k, false); err != nil {
				return err
			}
			pt = &point{}
			d.pods[k] = pt
		}
	default:
		k := containerKey{podKey{key.namespace, key.pod}, key.container}
		if pt = d.containers[k]; pt == nil {
			if err := d.refPod(k.podKey, true); err != nil {
				return err
			}
			pt = &point{}
			d.containers[k] = pt
		}
	}
	d.any = true

	if def.Resource != tsdb.ResourceStartTime {
		pt.s.Set(def.Resource, v)
		pt.tsMs = tsMs
		return nil
	}
	// Seconds to nanoseconds the way metrics-server converts them, so the fresh-container
	// and restart rules see the same instant.
	ns := v * 1e9
	if ns >= math.MaxInt64 {
		return fmt.Errorf("series %s: start time %v out of range", name, v)
	}
	if v > 0 {
		pt.startNs, pt.hasStart = int64(ns), true
	}
	return nil
}

// refPod counts pod k, and one more of its containers if newContainer, against the caps.
func (d *decoder) refPod(k podKey, newContainer bool) error {
	n, known := d.podRefs[k]
	if !known && len(d.podRefs) >= MaxPodsPerNode {
		return fmt.Errorf("%w: more than %d pods", errLimit, MaxPodsPerNode)
	}
	if newContainer {
		if n >= MaxContainersPerPod {
			return fmt.Errorf("%w: pod %s/%s has more than %d containers", errLimit, k.namespace, k.pod, MaxContainersPerPod)
		}
		n++
	}
	d.podRefs[k] = n
	return nil
}

// result assembles the NodeScrape, sorted (pods by namespace and name, containers by namespace,
// pod and container) so that output is deterministic.
func (d *decoder) result(scrapeTime time.Time) tsdb.NodeScrape {
	out := tsdb.NodeScrape{ScrapeTime: scrapeTime}
	if len(d.pods) > 0 {
		out.Pods = make([]tsdb.PodSample, 0, len(d.pods))
	}
	if len(d.containers) > 0 {
		out.Containers = make([]tsdb.ContainerSample, 0, len(d.containers))
	}
	if d.node.complete() {
		out.NodeSample, out.HasNode = d.node.sample(), true
	}
	for k, pt := range d.pods {
		if !pt.complete() {
			continue
		}
		out.Pods = append(out.Pods, tsdb.PodSample{Namespace: k.namespace, Pod: k.pod, Sample: pt.sample()})
	}
	incomplete := make(map[podKey]bool)
	for k, pt := range d.containers {
		if !pt.complete() {
			incomplete[k.podKey] = true
		}
	}
	for k, pt := range d.containers {
		if incomplete[k.podKey] {
			continue
		}
		c := tsdb.ContainerSample{Namespace: k.namespace, Pod: k.pod, Container: k.container, Sample: pt.sample()}
		if pt.hasStart {
			c.StartTime = time.Unix(0, pt.startNs).UTC()
		}
		out.Containers = append(out.Containers, c)
	}
	slices.SortFunc(out.Pods, func(a, b tsdb.PodSample) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	slices.SortFunc(out.Containers, func(a, b tsdb.ContainerSample) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Container, b.Container))
	})
	return out
}
