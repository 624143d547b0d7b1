package httpapi

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestResolution checks the resolution parameter over a store whose 5m tier holds the
// fixture's hours: by default hourly steps are read from the tier where it holds them and
// from the raw samples elsewhere, and the response says which; their values are the raw
// ones within the tier's rounding; raw and a forced tier serve every step; a bad value or a
// step the tier's windows do not tile is a 400 naming the parameter.
func TestResolution(t *testing.T) {
	t.Parallel()
	f := defaultFixture()
	f.rounds = 8 * 240 // 8 hours
	f.now = at(8*time.Hour + 30*time.Minute)
	e := newEnv(t, f)
	// The fixture is days old, so every window of it is final.
	if err := e.db.Rollup(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := e.handler(t)
	const path = "/history/v1/nodes/n1?start=2026-11-30T00:00:00Z&end=2026-11-30T08:00:00Z&step=1h&resource=cpu,memory"

	w := get(t, h, "admin", path)
	auto := decode(t, w)
	type src struct{ Source, From, To string }
	var got []src
	for _, s := range auto.Query.Sources {
		got = append(got, src(s))
	}
	want := []src{{"raw", "2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z"}, {"5m", "2026-11-30T01:00:00Z", "2026-11-30T08:00:00Z"}}
	if auto.Query.Resolution != "auto" || len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("resolution %q, sources %v; want auto, %v", auto.Query.Resolution, got, want)
	}
	if hdr := w.Header().Get(headerSources); hdr != "raw 2026-11-30T00:00:00Z/2026-11-30T00:00:00Z, 5m 2026-11-30T01:00:00Z/2026-11-30T08:00:00Z" {
		t.Errorf("%s: %q", headerSources, hdr)
	}

	raw := decode(t, get(t, h, "admin", path+"&resolution=raw"))
	if len(raw.Query.Sources) != 1 || raw.Query.Sources[0].Source != "raw" {
		t.Errorf("resolution=raw: sources %v", raw.Query.Sources)
	}
	for res, tol := range map[string]float64{"cpu": 0.5e-3, "memory": 512} {
		a, r := auto.Series[0].Resources[res], raw.Series[0].Resources[res]
		n := 0
		for i := range r.Values {
			if (a.Values[i] == nil) != (r.Values[i] == nil) {
				t.Errorf("%s step %s: auto %v, raw %v", res, auto.Timestamps[i], a.Values[i], r.Values[i])
				continue
			}
			if r.Values[i] == nil {
				continue
			}
			n++
			if math.Abs(*a.Values[i]-*r.Values[i]) > tol {
				t.Errorf("%s step %s: auto %v, raw %v", res, auto.Timestamps[i], *a.Values[i], *r.Values[i])
			}
		}
		if n < 7 {
			t.Errorf("%s: %d steps compared", res, n)
		}
	}

	tier := decode(t, get(t, h, "admin", path+"&resolution=5m"))
	if len(tier.Query.Sources) != 1 || tier.Query.Sources[0].Source != "5m" || tier.Query.Resolution != "5m" {
		t.Errorf("resolution=5m: resolution %q, sources %v", tier.Query.Resolution, tier.Query.Sources)
	}
	// Without a step, a forced tier's default step is a whole number of its windows.
	if q := decode(t, get(t, h, "admin", "/history/v1/nodes/n1?start=2026-11-30T00:00:00Z&end=2026-11-30T02:00:00Z&resolution=1h")).Query; q.Step != "1h0m0s" {
		t.Errorf("resolution=1h without a step: step %s, want 1h0m0s", q.Step)
	}

	for _, c := range []struct{ query, msg string }{
		{"&resolution=2m", `unknown resolution "2m"`},
		{"&resolution=1h&step=30m", "whole multiples of 1h0m0s"},
	} {
		w := get(t, h, "admin", strings.Replace(path, "&step=1h", "", 1)+c.query)
		er := decodeError(t, w)
		if w.Code != http.StatusBadRequest || er.Parameter != paramResolution || !strings.Contains(er.Message, c.msg) {
			t.Errorf("%s: %d %+v, want 400 naming resolution (%q)", c.query, w.Code, er, c.msg)
		}
	}
}
