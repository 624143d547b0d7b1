package tsdb

import (
	"fmt"
	"math"
	"time"
)

// Rollups: the downsampled tiers' values.
//
// A tier summarises the raw series of every node, pod and container in windows of its
// resolution R. Window s is (s, s+R] for s a multiple of R since the Unix epoch, and its
// values are stamped s: the time its window starts. A raw point falls in the window that
// holds it by the rules of Range (range.go), so that a step of a range query whose grid is
// aligned to R has the same value from the raw series and from the tier:
//
//   - CPU: the counter's rate between two consecutive samples, over (prev, t], is a raw
//     point when the interval is at most maxGapFactor resolutions long and the counter did
//     not decrease (a restart). It covers every window the interval overlaps: its rate
//     counts in each window's maximum, and the overlap in milliseconds weighs it in the
//     window's average. So avg is the counter's increase over the part of the window that
//     intervals cover, divided by that part, and covered is that part in milliseconds.
//   - Memory: every sample counts in the window that holds its time; avg is their mean,
//     count how many there were.
//
// Values are stored as integers where the unit allows, so that the TSDB's encoding keeps
// them small: CPU in millicores and milliseconds, memory in KiB (rounded half away from
// zero). A tier's avg is the raw avg rounded; its max the raw max rounded (rounding keeps
// the order); covered and count are exact. A coarser step from a tier weighs each window's
// avg by its covered milliseconds (CPU) or its count (memory), so a missed scrape does not
// tilt an average.
//
// Every tier is computed from the raw series, not from a finer tier, so that its avg is the
// raw computation rounded once. That reads the raw samples again for each tier: a 5m batch
// of 100 nodes × 30 pods took 0.80–0.84 s per hour of raw data (BenchmarkRollup, 0.14 s
// per million raw samples). Scaled, not measured: ten times the samples and a second tier
// reading them too make about 16 s an hour at 1,000 nodes, some 3 % of the scrape loop's
// CPU there (2.2 s a round). A pass reads each raw series once per
// field it writes (four or five). One read per resource would cut that about four times,
// but a block's index wants its chunks in series order, field after field: the other
// fields' encoded chunks of every series of a resource would wait in memory: estimated,
// not measured, at some 25 MB a pass at 1,000 nodes (60,000 container series × 5 fields ×
// ~50 bytes, and their labels), to save about 12 s of CPU an hour (the scaled figure above).

// Tier identifies a downsampled tier.
type Tier uint8

// The tiers, finest first.
const (
	Tier5m Tier = iota
	Tier1h
	NumTiers // the number of tiers
)

// tierDefs describes each tier.
var tierDefs = [NumTiers]tierDef{
	Tier5m: {name: "5m", res: 5 * time.Minute, batch: 2 * time.Hour, retention: 90 * 24 * time.Hour, sizePercent: 28},
	Tier1h: {name: "1h", res: time.Hour, batch: 24 * time.Hour, retention: 400 * 24 * time.Hour, sizePercent: 12},
}

type tierDef struct {
	name string        // in series names, directories and the read APIs' resolution parameter
	res  time.Duration // the window
	// batch is the span of windows one rollup pass writes as one block; a multiple of res,
	// at most maxChunkSamples windows. Compactions merge blocks but keep their chunks, so a
	// batch of 24 windows makes chunks of 24 samples for good (a 6h batch of the 1h tier
	// took 8.2–10.1 bytes per sample in the bench stores, its 24h batch 3.7).
	batch time.Duration
	// retention is DefaultTierRetention's.
	retention time.Duration
	// sizePercent is the tier's share of Config.RetentionSize (config.go).
	sizePercent int64
}

// String returns the tier's name: "5m" or "1h".
func (t Tier) String() string {
	if t < NumTiers {
		return tierDefs[t].name
	}
	return fmt.Sprintf("Tier(%d)", uint8(t))
}

// Resolution returns the tier's window.
func (t Tier) Resolution() time.Duration { return tierDefs[t].res }

// DefaultTierRetention returns how long tier t keeps its rollups by default: 90 days for 5m,
// 400 days for 1h.
func DefaultTierRetention(t Tier) time.Duration { return tierDefs[t].retention }

// RollupField is one value a tier keeps per window and object.
type RollupField uint8

// The fields of a window, in the order of their series names.
const (
	FieldCPUCovered RollupField = iota // milliseconds covered by CPU intervals
	FieldCPUCount                      // CPU intervals that end in the window
	FieldCPUAvg                        // millicores
	FieldCPUMin                        // millicores
	FieldCPUMax                        // millicores
	FieldMemCount                      // working set samples
	FieldMemAvg                        // KiB
	FieldMemMin                        // KiB
	FieldMemMax                        // KiB
	NumRollupFields
)

// rollupFieldDefs describes each field. The series name of field f of tier t for objects o
// is "<o>:<metric>:<op>_<t>", e.g. container:cpu_usage_millicores:avg_5m.
var rollupFieldDefs = [NumRollupFields]struct {
	resource Resource
	metric   string
	op       string
}{
	FieldCPUCovered: {ResourceCPU, "cpu_usage_covered_milliseconds", "sum"},
	FieldCPUCount:   {ResourceCPU, "cpu_usage_intervals", "count"},
	FieldCPUAvg:     {ResourceCPU, "cpu_usage_millicores", "avg"},
	FieldCPUMin:     {ResourceCPU, "cpu_usage_millicores", "min"},
	FieldCPUMax:     {ResourceCPU, "cpu_usage_millicores", "max"},
	FieldMemCount:   {ResourceMemory, "memory_working_set_samples", "count"},
	FieldMemAvg:     {ResourceMemory, "memory_working_set_kibibytes", "avg"},
	FieldMemMin:     {ResourceMemory, "memory_working_set_kibibytes", "min"},
	FieldMemMax:     {ResourceMemory, "memory_working_set_kibibytes", "max"},
}

// Resource returns the resource whose raw series the field summarises.
func (f RollupField) Resource() Resource { return rollupFieldDefs[f].resource }

// RollupSeriesName returns the metric name of field f of tier t for objects of kind o,
// "" when there is none.
func RollupSeriesName(o Object, t Tier, f RollupField) string {
	if o == 0 || o >= numObjects || t >= NumTiers || f >= NumRollupFields {
		return ""
	}
	d := rollupFieldDefs[f]
	return o.String() + ":" + d.metric + ":" + d.op + "_" + tierDefs[t].name
}

// rollupWindow accumulates one window of one object's raw series.
type rollupWindow struct {
	cpuSum         float64 // Σ rate × overlap in seconds: core-seconds
	cpuCovered     int64   // ms
	cpuCount       int     // intervals that end in the window
	cpuMin, cpuMax float64 // cores
	memSum         float64 // bytes
	memCount       int
	memMin, memMax float64 // bytes
}

// has reports whether the window has a value of field f. A window whose only interval
// began in it and ends in the next has covered time but no interval ending in it: its count
// is 0 and stored; an interval ending in a window always covers part of it.
func (w *rollupWindow) has(f RollupField) bool {
	if f.Resource() == ResourceCPU {
		return w.cpuCovered > 0
	}
	return w.memCount > 0
}

// value returns field f's stored value; has(f) must hold.
func (w *rollupWindow) value(f RollupField) float64 {
	switch f {
	case FieldCPUCovered:
		return float64(w.cpuCovered)
	case FieldCPUAvg:
		return math.Round(w.cpuSum / (float64(w.cpuCovered) / 1e3) * 1e3)
	case FieldCPUCount:
		return float64(w.cpuCount)
	case FieldCPUMin:
		return math.Round(w.cpuMin * 1e3)
	case FieldCPUMax:
		return math.Round(w.cpuMax * 1e3)
	case FieldMemCount:
		return float64(w.memCount)
	case FieldMemAvg:
		return math.Round(w.memSum / float64(w.memCount) / 1024)
	case FieldMemMin:
		return math.Round(w.memMin / 1024)
	case FieldMemMax:
		return math.Round(w.memMax / 1024)
	}
	return math.NaN()
}

// roller computes the windows of one raw series at a time over the windows starting in
// [from, to), reusing its buffers.
type roller struct {
	resMs, fromMs, toMs int64
	maxGapMs            int64
	counter             bool
	windows             []rollupWindow
}

// newRoller returns a roller for the windows of resolution res starting in [from, to) (both
// multiples of res), over raw series scraped every resolution.
func newRoller(res time.Duration, from, to int64, resolution time.Duration) *roller {
	return &roller{
		resMs: res.Milliseconds(), fromMs: from, toMs: to,
		maxGapMs: gapBound(resolution).Milliseconds(),
		windows:  make([]rollupWindow, (to-from)/res.Milliseconds()),
	}
}

// readRange returns the raw samples a pass must read: from one gap before the first window
// (an interval that ends in it may start before it) to one gap after the last (an interval
// that starts in it may end after it).
func (r *roller) readRange() (mint, maxt int64) { return r.fromMs - r.maxGapMs, r.toMs + r.maxGapMs }

// window returns the index of the window (s, s+res] that holds tMs, which may be outside
// [0, len(windows)).
func (r *roller) window(tMs int64) int {
	// s < t ≤ s+res ⇔ s = ceil(t/res)·res − res; t > 0 here.
	return int(ceilDiv(tMs, r.resMs) - 1 - r.fromMs/r.resMs)
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) == (b < 0) {
		q++
	}
	return q
}

// reset starts a series of the given kind.
func (r *roller) reset(counter bool) {
	r.counter = counter
	for i := range r.windows {
		r.windows[i] = rollupWindow{cpuMin: math.Inf(1), cpuMax: math.Inf(-1), memMin: math.Inf(1), memMax: math.Inf(-1)}
	}
}

// run reads one series' samples in time order (next returns false after the last) and fills
// the windows, by the rules of Range.
func (r *roller) run(counter bool, next func() (int64, float64, bool)) {
	r.reset(counter)
	var prevT int64
	var prevV float64
	had := false
	for {
		t, v, ok := next()
		if !ok {
			return
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		pt, pv, ph := prevT, prevV, had
		prevT, prevV, had = t, v, true
		if !counter {
			if i := r.window(t); i >= 0 && i < len(r.windows) {
				w := &r.windows[i]
				w.memSum += v
				w.memCount++
				w.memMin = min(w.memMin, v)
				w.memMax = max(w.memMax, v)
			}
			continue
		}
		if !ph || t <= pt || t-pt > r.maxGapMs || v < pv {
			continue
		}
		rate := (v - pv) / (float64(t-pt) / 1e3)
		first, last := max(r.window(pt+1), 0), min(r.window(t), len(r.windows)-1)
		for i := first; i <= last; i++ {
			start := r.fromMs + int64(i)*r.resMs
			overlap := min(start+r.resMs, t) - max(start, pt)
			w := &r.windows[i]
			w.cpuSum += rate * (float64(overlap) / 1e3)
			w.cpuCovered += overlap
			w.cpuMin = min(w.cpuMin, rate)
			w.cpuMax = max(w.cpuMax, rate)
		}
		if i := r.window(t); i >= 0 && i < len(r.windows) {
			r.windows[i].cpuCount++
		}
	}
}

// stamp returns the time window i is stamped with: its start.
func (r *roller) stamp(i int) int64 { return r.fromMs + int64(i)*r.resMs }
