package httpapi

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAccept: Accept: text/csv selects CSV unless a JSON type comes first; format=
// overrides the header.
func TestAccept(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	path := "/history/v1/namespaces/shop/pods?" + goldenRange
	for _, tc := range []struct {
		accept, format string
		csv            bool
	}{
		{"", "", false},
		{"*/*", "", false},
		{"text/csv", "", true},
		{"Text/CSV; charset=utf-8", "", true},
		{"application/json, text/csv", "", false},
		{"application/*, text/csv", "", false},
		{"text/html, text/csv", "", true},
		{"text/csv", "json", false},
		{"application/json", "csv", true},
		{"", "csv", true},
	} {
		p := path
		if tc.format != "" {
			p += "&format=" + tc.format
		}
		w := get(t, h, "admin", p, "Accept", tc.accept)
		if w.Code != http.StatusOK {
			t.Fatalf("Accept %q format %q: %d %s", tc.accept, tc.format, w.Code, w.Body)
		}
		ct := w.Header().Get("Content-Type")
		if gotCSV := strings.HasPrefix(ct, "text/csv"); gotCSV != tc.csv {
			t.Errorf("Accept %q format %q: Content-Type %q, want CSV %v", tc.accept, tc.format, ct, tc.csv)
		}
		if tc.csv {
			parseCSV(t, w)
		} else {
			decode(t, w)
		}
	}
}

// TestCSVShape: a header row, then one row per step × series × resource (view=series)
// or per series × resource (view=summary), agreeing with the JSON response.
func TestCSVShape(t *testing.T) {
	e := newEnv(t, defaultFixture())
	h := e.handler(t)
	for _, q := range []string{
		"/namespaces/shop/pods?" + goldenRange,
		"/namespaces/shop/pods?resource=memory,cpu,swap&" + minuteGrid(0, 20).String(),
		"/namespaces/shop/pods/db-0/containers?resource=cpu&" + goldenRange,
		"/nodes?" + goldenRange,
		"/cluster?" + goldenRange,
		"/namespaces/shop/pods?view=summary&" + goldenRange,
		"/namespaces/shop/pods?view=summary&summary=p95,count&resource=cpu&" + goldenRange,
		"/namespaces/shop/pods?view=summary&summary=none&" + goldenRange,
	} {
		t.Run(q, func(t *testing.T) {
			j := decode(t, get(t, h, "admin", "/history/v1"+q))
			rows := parseCSV(t, get(t, h, "admin", "/history/v1"+q, "Accept", "text/csv"))
			header := rows[0]
			summary := j.Query.View == "summary"
			want := []string{"timestamp", "unix"}
			if summary {
				want = nil
			}
			want = append(want, "kind", "namespace", "name", "uid", "node", "container", "owner_kind", "owner_name", "resource", "unit")
			if summary {
				want = append(want, j.Query.Summary...)
			} else {
				want = append(want, "value")
			}
			want = append(want, "requests", "limits", "capacity", "allocatable")
			if strings.Join(header, ",") != strings.Join(want, ",") {
				t.Fatalf("header %q, want %q", header, want)
			}
			n := len(j.Series) * len(j.Query.Resources)
			if !summary {
				n *= j.Query.Points
			}
			if len(rows)-1 != n || n == 0 {
				t.Fatalf("%d rows, want %d series × %d resources × %d steps = %d", len(rows)-1, len(j.Series), len(j.Query.Resources), j.Query.Points, n)
			}
			// Every row agrees with the JSON.
			recs := csvRecords(t, rows)
			i := 0
			for _, s := range j.Series {
				for _, res := range j.Query.Resources {
					rr := s.Resources[res]
					steps := j.Query.Points
					if summary {
						steps = 1
					}
					for step := range steps {
						rec := recs[i]
						i++
						if rec["kind"] != s.Object.Kind || rec["uid"] != s.Object.UID || rec["name"] != s.Object.Name ||
							rec["container"] != s.Object.Container || rec["resource"] != res || rec["unit"] != rr.Unit {
							t.Fatalf("row %d %v is not %s %s %s", i, rec, s.Object.Kind, s.Object.UID, res)
						}
						if summary {
							for _, a := range j.Query.Summary {
								checkCell(t, rec, a, rr.Summary[a])
							}
							continue
						}
						ts, _ := time.Parse(time.RFC3339, j.Timestamps[step])
						if rec["timestamp"] != j.Timestamps[step] || rec["unix"] != strconv.FormatInt(ts.Unix(), 10) {
							t.Errorf("row %d at %s %s, want %s", i, rec["timestamp"], rec["unix"], j.Timestamps[step])
						}
						checkCell(t, rec, "value", rr.Values[step])
						for _, line := range []string{"requests", "limits", "capacity", "allocatable"} {
							var v *float64
							if l := lineOf(rr, line); l != nil {
								v = l[step]
							}
							checkCell(t, rec, line, v)
						}
					}
				}
			}
		})
	}
}

// checkCell checks that CSV cell name holds v as the JSON does, empty for null.
func checkCell(t *testing.T, rec map[string]string, name string, v *float64) {
	t.Helper()
	want := ""
	if v != nil {
		b, _ := json.Marshal(*v)
		want = string(b)
	}
	if rec[name] != want {
		t.Errorf("%s %s %s: cell %s is %q, want %q", rec["uid"], rec["resource"], rec["timestamp"], name, rec[name], want)
	}
}

// TestNumbers: step values are written as encoding/json writes numbers (bytes as
// integers), null in JSON and empty in CSV for a gap.
func TestNumbers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []float64{0, 1, -1, 0.1, 0.2, 0.30000000000000004, 1e-6, 9.99e-7, 1e-7, 123456789, 104857600, 1 << 40,
		1e20, 1e21, 1.5e300, -2.5e-300, math.SmallestNonzeroFloat64, math.MaxFloat64, 3.8, 2.0 / 3}
	for range 2000 {
		vals = append(vals, math.Float64frombits(r.Uint64()), r.Float64()*math.Pow(10, float64(r.IntN(40)-20)))
	}
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendFloat(nil, v, "null"); string(got) != string(want) {
			t.Errorf("appendFloat(%v) = %s, encoding/json writes %s", v, got, want)
		}
		if got := cell(v); got != string(want) {
			t.Errorf("cell(%v) = %s, want %s", v, got, want)
		}
		if back, err := strconv.ParseFloat(cell(v), 64); err != nil || back != v {
			t.Errorf("cell(%v) = %s does not read back: %v %v", v, cell(v), back, err)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := string(appendFloat(nil, v, "null")); got != "null" {
			t.Errorf("appendFloat(%v) = %s, want null", v, got)
		}
		if got := cell(v); got != "" {
			t.Errorf("cell(%v) = %q, want empty", v, got)
		}
	}
	b, err := floats{1, math.NaN(), 104857600}.MarshalJSON()
	if err != nil || string(b) != "[1,null,104857600]" {
		t.Errorf("floats: %s %v", b, err)
	}
	if !json.Valid(b) {
		t.Errorf("floats: invalid JSON %s", b)
	}
}
