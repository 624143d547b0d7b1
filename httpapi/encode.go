package httpapi

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hindsight-metrics/hindsight/tsdb"
)

// The JSON schema (docs/history-api.md and openapi.json describe it).

type responseJSON struct {
	Query      queryJSON    `json:"query"`
	Timestamps []string     `json:"timestamps,omitempty"`
	Series     []seriesJSON `json:"series"`
}

type queryJSON struct {
	Start       string   `json:"start"`
	End         string   `json:"end"`
	Step        string   `json:"step"`
	StepSeconds float64  `json:"stepSeconds"`
	Points      int      `json:"points"`
	Resources   []string `json:"resources"`
	Agg         string   `json:"agg"`
	Summary     []string `json:"summary"`
	View        string   `json:"view"`
	// Resolution is what the request asked for: auto (the default), raw, 5m or 1h.
	Resolution string `json:"resolution"`
	// Sources says which source served each run of steps: raw samples or a tier.
	Sources []sourceJSON `json:"sources,omitempty"`
}

type seriesJSON struct {
	Object    objectInfo               `json:"object"`
	Resources map[string]*resourceJSON `json:"resources"`
}

type resourceJSON struct {
	Unit        string              `json:"unit"`
	Values      floats              `json:"values,omitempty"`
	Requests    floats              `json:"requests,omitempty"`
	Limits      floats              `json:"limits,omitempty"`
	Capacity    floats              `json:"capacity,omitempty"`
	Allocatable floats              `json:"allocatable,omitempty"`
	Summary     map[string]*float64 `json:"summary,omitempty"`
	// Latest holds each line's last known value in the range.
	Latest map[string]*float64 `json:"latest,omitempty"`
}

// floats encodes NaN, a gap, as null.
type floats []float64

func (f floats) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 8*len(f)+2)
	b = append(b, '[')
	for i, v := range f {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, v, "null")
	}
	return append(b, ']'), nil
}

// appendFloat appends v as encoding/json does (and so as the summary and latest values
// are): shortest, in plain notation unless tiny or huge, so that bytes are integers
// (104857600, not 1.048576e+08) in JSON and CSV alike.
func appendFloat(b []byte, v float64, gap string) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, gap...)
	}
	fmt := byte('f')
	if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	b = strconv.AppendFloat(b, v, fmt, -1, 64)
	if fmt == 'e' {
		// 1e-07 to 1e-7, as encoding/json
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func floatPtr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// sourceJSON is a run of steps, from the first to the last (inclusive), and where they were
// read.
type sourceJSON struct {
	Source string `json:"source"`
	From   string `json:"from"`
	To     string `json:"to"`
}

// headerSources carries the sources in every format (CSV has no room for them):
// "5m 2026-01-01T00:00:00Z/2026-01-05T00:00:00Z, raw 2026-01-05T01:00:00Z/...".
const headerSources = "Hindsight-Sources"

func sourcesHeader(q *query) string {
	parts := make([]string, len(q.parts))
	for i, p := range q.parts {
		parts[i] = p.Source.String() + " " + q.at(p.First).UTC().Format(time.RFC3339) + "/" + q.at(p.Last).UTC().Format(time.RFC3339)
	}
	return strings.Join(parts, ", ")
}

// summaryValue is aggregation a of s, nil when it is NaN (count is never NaN).
func summaryValue(s tsdb.Summary, a tsdb.Agg) *float64 { return floatPtr(s.Get(a)) }

// errTooLarge is cappedBuffer's error past its cap.
var errTooLarge = errors.New("response too large")

// cappedBuffer is a buffer that refuses to grow past max bytes.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// encode writes res in q's format to w and returns its content type.
func encode(w io.Writer, q *query, res *result) (contentType string, err error) {
	if q.format == formatCSV {
		return "text/csv; charset=utf-8; header=present", encodeCSV(w, q, res)
	}
	return "application/json", json.NewEncoder(w).Encode(toJSON(q, res))
}

func toJSON(q *query, res *result) responseJSON {
	out := responseJSON{
		Query: queryJSON{
			Start: q.start.UTC().Format(time.RFC3339), End: q.end.UTC().Format(time.RFC3339),
			Step: q.step.String(), StepSeconds: q.step.Seconds(), Points: q.steps(),
			Agg: q.agg.String(), View: string(q.view),
			Resources: make([]string, 0, len(q.resources)), Summary: make([]string, 0, len(q.summary)),
		},
		Series: make([]seriesJSON, 0, len(res.series)),
	}
	for _, r := range q.resources {
		out.Query.Resources = append(out.Query.Resources, r.String())
	}
	out.Query.Resolution = q.source.String()
	for _, p := range q.parts {
		out.Query.Sources = append(out.Query.Sources, sourceJSON{
			Source: p.Source.String(), From: q.at(p.First).UTC().Format(time.RFC3339), To: q.at(p.Last).UTC().Format(time.RFC3339),
		})
	}
	for _, a := range q.summary {
		out.Query.Summary = append(out.Query.Summary, a.String())
	}
	if q.view == viewSeries {
		out.Timestamps = make([]string, q.steps())
		for i := range out.Timestamps {
			out.Timestamps[i] = q.at(i).UTC().Format(time.RFC3339)
		}
	}
	for _, s := range res.series {
		sj := seriesJSON{Object: s.object, Resources: make(map[string]*resourceJSON, len(s.resources))}
		for _, r := range s.resources {
			rj := &resourceJSON{Unit: r.resource.Unit()}
			if q.view == viewSeries {
				rj.Values = r.values
			}
			if len(q.summary) > 0 {
				rj.Summary = make(map[string]*float64, len(q.summary))
				for _, a := range q.summary {
					rj.Summary[a.String()] = summaryValue(r.summary, a)
				}
			}
			if len(r.lines) > 0 {
				rj.Latest = make(map[string]*float64, len(r.lines))
			}
			for _, l := range r.lines {
				rj.Latest[l.name] = floatPtr(l.last())
				if q.view != viewSeries {
					continue
				}
				switch l.name {
				case lineRequests:
					rj.Requests = l.values
				case lineLimits:
					rj.Limits = l.values
				case lineCapacity:
					rj.Capacity = l.values
				case lineAllocatable:
					rj.Allocatable = l.values
				}
			}
			sj.Resources[r.resource.String()] = rj
		}
		out.Series = append(out.Series, sj)
	}
	return out
}

// CSV (RFC 4180): a header row, then one row per step, series and resource (view=series)
// or per series and resource (view=summary). An empty cell is a gap or an unknown value.

var csvObjectColumns = []string{"kind", "namespace", "name", "uid", "node", "container", "owner_kind", "owner_name"}

var csvLineColumns = []string{lineRequests, lineLimits, lineCapacity, lineAllocatable}

func objectCells(o *objectInfo) []string {
	var ok, on string
	if o.Owner != nil {
		ok, on = o.Owner.Kind, o.Owner.Name
	}
	return []string{o.Kind, o.Namespace, o.Name, o.UID, o.Node, o.Container, ok, on}
}

func cell(v float64) string { return string(appendFloat(nil, v, "")) }

func encodeCSV(w io.Writer, q *query, res *result) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	header := []string{}
	if q.view == viewSeries {
		header = append(header, "timestamp", "unix")
	}
	header = append(header, csvObjectColumns...)
	header = append(header, "resource", "unit")
	if q.view == viewSeries {
		header = append(header, "value")
	} else {
		for _, a := range q.summary {
			header = append(header, a.String())
		}
	}
	header = append(header, csvLineColumns...)
	if err := cw.Write(header); err != nil {
		return err
	}
	row := make([]string, 0, len(header))
	for _, s := range res.series {
		obj := objectCells(&s.object)
		for _, r := range s.resources {
			lines := make(map[string][]float64, len(r.lines))
			for _, l := range r.lines {
				lines[l.name] = l.values
			}
			if q.view == viewSummary {
				row = append(row[:0], obj...)
				row = append(row, r.resource.String(), r.resource.Unit())
				for _, a := range q.summary {
					v := r.summary.Get(a)
					row = append(row, cell(v))
				}
				for _, name := range csvLineColumns {
					row = append(row, cell(line{name, lines[name]}.last()))
				}
				if err := cw.Write(row); err != nil {
					return err
				}
				continue
			}
			for i := range q.steps() {
				t := q.at(i)
				row = append(row[:0], t.UTC().Format(time.RFC3339), strconv.FormatInt(t.Unix(), 10))
				row = append(row, obj...)
				row = append(row, r.resource.String(), r.resource.Unit(), cell(r.values[i]))
				for _, name := range csvLineColumns {
					if vs := lines[name]; vs != nil {
						row = append(row, cell(vs[i]))
					} else {
						row = append(row, "")
					}
				}
				if err := cw.Write(row); err != nil {
					return err
				}
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
