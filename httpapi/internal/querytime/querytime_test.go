package querytime

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// now is the clock of the tests.
var now = time.Date(2026, 11, 30, 12, 34, 56, 789_000_000, time.UTC)

func TestTime(t *testing.T) {
	tests := []struct {
		name, in string
		want     time.Time
		err      string
	}{
		{name: "now", in: "now", want: now},
		{name: "relative", in: "-24h", want: now.Add(-24 * time.Hour)},
		{name: "now minus days", in: "now-7d", want: now.Add(-7 * 24 * time.Hour)},
		{name: "now plus", in: "now+1h30m", want: now.Add(90 * time.Minute)},
		{name: "relative seconds", in: "now-90", want: now.Add(-90 * time.Second)},
		{name: "negative unix seconds", in: "-1.5", want: time.Unix(-2, 500_000_000).UTC()},
		{name: "unix seconds", in: "1764489600", want: time.Unix(1764489600, 0).UTC()},
		{name: "fraction to the millisecond", in: "1764489600.1234", want: time.Unix(1764489600, 123_000_000).UTC()},
		{name: "rfc 3339", in: "2026-11-30T08:00:00Z", want: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
		{name: "rfc 3339 nano", in: "2026-11-30T08:00:00.123456789+02:00", want: time.Date(2026, 11, 30, 6, 0, 0, 123456789, time.UTC)},
		{name: "prometheus' min", in: minTimeFormatted, want: MinTime},
		{name: "prometheus' max", in: maxTimeFormatted, want: MaxTime},
		{name: "prometheus' min in seconds", in: strconv.FormatInt(MinTime.Unix(), 10), want: MinTime},
		{name: "empty", in: "", err: `cannot parse "" to a valid timestamp`},
		{name: "word", in: "yesterday", err: `cannot parse "yesterday" to a valid timestamp`},
		{name: "NaN", in: "NaN", err: `cannot parse "NaN" to a valid timestamp: out of range`},
		{name: "huge", in: "1e300", err: `cannot parse "1e300" to a valid timestamp: out of range`},
		{name: "empty relative", in: "now-", err: `cannot parse "now-" to a valid timestamp: cannot parse "" to a valid duration`},
		{name: "double sign", in: "now--5m", err: `cannot parse "now--5m" to a valid timestamp`},
		{name: "date only", in: "2026-11-30", err: `cannot parse "2026-11-30" to a valid timestamp`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Time(tt.in, now)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Time(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("Time(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		name, in string
		want     time.Duration
		err      string
	}{
		{name: "seconds", in: "300", want: 5 * time.Minute},
		{name: "fraction to the millisecond", in: "0.0015", want: 2 * time.Millisecond},
		{name: "negative seconds", in: "-15", want: -15 * time.Second},
		{name: "not 1.000999999s", in: "1.001", want: 1001 * time.Millisecond},
		{name: "below a millisecond", in: "0.0001", want: 0},
		{name: "prometheus", in: "1h30m", want: 90 * time.Minute},
		{name: "days and weeks", in: "2w1d", want: 15 * 24 * time.Hour},
		{name: "milliseconds", in: "1500ms", want: 1500 * time.Millisecond},
		{name: "word", in: "often", err: `cannot parse "often" to a valid duration`},
		{name: "negative prometheus", in: "-1m", err: `cannot parse "-1m" to a valid duration`},
		{name: "unit order", in: "5m1h", err: `cannot parse "5m1h" to a valid duration`},
		{name: "overflow", in: "1e10", err: `cannot parse "1e10" to a valid duration. It overflows int64`},
		{name: "NaN", in: "NaN", err: `cannot parse "NaN" to a valid duration. It overflows int64`},
		{name: "empty", in: "", err: `cannot parse "" to a valid duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Duration(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Duration(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Duration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzTime(f *testing.F) {
	for _, s := range []string{"", "now", "now-", "now+", "-", "-24h", "now-7d", "now+1h", "-1h30m", "now-1.5d", "now--5m", "now-+5",
		"2026-11-30T00:00:00Z", "2026-11-30T00:00:00.123456789+05:30", "2026-11-30T00:00:00", "1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
		"2200-01-01T00:00:00Z", "0", "1795996800", "1795996800.5", "-1", "-1.5", "7258118399.9999999", "1e9", "0x1p30", "NaN", "Inf", "-Inf", "1e300",
		"+1700000000", "1_000", ".5", "-.5", "now-0.000000001s", "now-3651d", "now-9999999999999999999h", minTimeFormatted, maxTimeFormatted} {
		f.Add(s)
	}
	lo, hi := MinTime.UnixMilli(), MaxTime.UnixMilli()
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Time(s, now)
		if err != nil {
			if err.Error() == "" || !got.IsZero() {
				t.Fatalf("Time(%q) failed with %v and an empty error or a time", s, got)
			}
			return
		}
		if ms := got.UnixMilli(); ms < lo || ms > hi {
			t.Fatalf("Time(%q) = %v, outside [MinTime, MaxTime]", s, got)
		}
		// As a client sends it, seconds with up to three decimals; exact while float64
		// holds milliseconds (|seconds| < 1e11, beyond year 5000).
		if math.Abs(float64(got.Unix())) < 1e11 {
			ms := got.UnixMilli()
			secs := strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
			if back, err := Time(secs, now); err != nil || back.UnixMilli() != ms {
				t.Errorf("Time(%q) = %v; its seconds %s read back as %v, %v", s, got, secs, back, err)
			}
		}
		// Written in RFC 3339, it reads back the same.
		if y := got.Year(); y >= 0 && y <= 9999 {
			rfc := got.Format(time.RFC3339Nano)
			if back, err := Time(rfc, now); err != nil || !back.Equal(got) {
				t.Errorf("Time(%q) = %v; its RFC 3339 %s reads back as %v, %v", s, got, rfc, back, err)
			}
		}
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"", "0", "60", "0.5", "1.001", "90s", "15m", "24h", "7d", "2w", "1y", "1d12h", "1h30m", "0.29h", "1500ms",
		"1.2.3s", "5m-", "-5m", "-15", "5", "s", "m5", ".", ".5s", "1e3", "1e3s", "0x10", "Inf", "NaN", "-Inf", "-0", "+5", "3651d",
		"1e10", "9.2e9", "99999999999999999999s", "1µs", "1ns", "01m", "1h1h", "9223372036854775807ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Duration(s)
		if err != nil {
			if err.Error() == "" || d != 0 {
				t.Fatalf("Duration(%q) failed with %v and an empty error or a duration", s, d)
			}
			return
		}
		if d%time.Millisecond != 0 {
			t.Errorf("Duration(%q) = %v, finer than a millisecond", s, d)
		}
		if fl, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			if (fl > 0.0005 && d < 0) || (fl < -0.0005 && d > 0) {
				t.Errorf("Duration(%q) = %v: the sign changed", s, d)
			}
		} else if d < 0 {
			t.Errorf("Duration(%q) = %v: a negative Prometheus duration", s, d)
		}
		// As Prometheus writes it, and in seconds, it reads back the same.
		if d >= 0 {
			str := model.Duration(d).String()
			if back, err := Duration(str); err != nil || back != d {
				t.Errorf("Duration(%q) = %v; as %q it reads back as %v, %v", s, d, str, back, err)
			}
		}
		if d > -1<<62 && d < 1<<62 {
			secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
			if back, err := Duration(secs); err != nil || back != d {
				t.Errorf("Duration(%q) = %v; as %s seconds it reads back as %v, %v", s, d, secs, back, err)
			}
		}
	})
}
