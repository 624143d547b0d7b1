package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/hindsight-metrics/hindsight/internal/testlog"
	"github.com/hindsight-metrics/hindsight/tsdb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// TestRun covers what run does before it starts serving: help, version, and flags that
// are refused, every problem at once, with exit code 2.
func TestRun(t *testing.T) {
	dayAt15s := tsdb.MinRetentionSize(tsdb.DefaultExpectedSeries, 15*time.Second)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string   // exact
		wantStderr []string // substrings
	}{
		{name: "help", args: []string{"--help"}, wantStderr: []string{"Usage: hindsight", "--retention-size", "--storage-path", "--shutdown-delay-duration"}},
		{name: "version", args: []string{"--version"}, wantStdout: "hindsight dev\n"},
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantCode: 2, wantStderr: []string{"unknown flag: --no-such-flag"}},
		{name: "arguments", args: []string{"serve"}, wantCode: 2, wantStderr: []string{`unexpected arguments ["serve"]`}},
		{
			name: "every invalid flag",
			args: []string{
				"--metric-resolution=5s", "--node-selector=a in (", "--kubelet-client-certificate=/c.pem",
				"--kubelet-max-response-size=huge", "--retention-size=-1", "--storage-path=",
				"--log-level=loud", "--log-format=xml", "--secure-port=-1", "--history-max-queries=0",
			},
			wantCode: 2,
			wantStderr: []string{
				"invalid flags:",
				"--metric-resolution should be a time duration at least 10s, but value 5s provided",
				"--metric-resolution should be larger than --kubelet-request-timeout",
				"--node-selector:",
				"--kubelet-client-certificate and --kubelet-client-key must be given together",
				`--kubelet-max-response-size: "huge" is not a quantity`,
				"--retention-size must not be negative",
				"--storage-path must not be empty",
				`--log-level must be debug, info, warn or error, got "loud"`,
				`--log-format must be text or json, got "xml"`,
				"--secure-port -1 must be between 0 and 65535",
				"--history-max-queries must be at least 1, got 0",
			},
		},
		{
			name:       "bytes in flight below the response cap",
			args:       []string{"--kubelet-max-response-size=8Mi", "--kubelet-max-bytes-in-flight=4Mi"},
			wantCode:   2,
			wantStderr: []string{"--kubelet-max-bytes-in-flight 4Mi is less than --kubelet-max-response-size 8Mi"},
		},
		{
			name:     "retention size below one day",
			args:     []string{"--retention-size=10Mi"},
			wantCode: 2,
			wantStderr: []string{fmt.Sprintf("--retention-size 10Mi (10485760 bytes) is less than one day of samples needs: about %d bytes for 1000 series at --metric-resolution 15s",
				dayAt15s)},
		},
		{
			name:     "retention size below one day at a finer resolution",
			args:     []string{"--retention-size=30Mi", "--metric-resolution=12s", "--kubelet-request-timeout=5s"},
			wantCode: 2,
			wantStderr: []string{fmt.Sprintf("--retention-size 30Mi (31457280 bytes) is less than one day of samples needs: about %d bytes",
				tsdb.MinRetentionSize(tsdb.DefaultExpectedSeries, 12*time.Second))},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tc.args, code, tc.wantCode, stderr.String())
			}
			if got := stdout.String(); got != tc.wantStdout {
				t.Errorf("run(%q) stdout = %q, want %q", tc.args, got, tc.wantStdout)
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("run(%q) stderr does not contain %q:\n%s", tc.args, want, stderr.String())
				}
			}
		})
	}
}

// event is something a component did during TestRunThenClose, at a time since the start.
type event struct {
	What string
	At   time.Duration
}

// TestRunThenClose checks the shutdown order with fake components in a synctest bubble:
// the scraper stops before the storage closes, the storage closes after the API server
// or at the deadline, and errors come back.
func TestRunThenClose(t *testing.T) {
	t.Parallel()
	errAPI := errors.New("listen: address in use")
	errClose := errors.New("close: I/O error")
	errFeed := errors.New("start catalog feed: informer stopped")
	const signal = 10 * time.Second // when the shutdown signal comes
	tests := []struct {
		name string
		// How long each component takes to stop once asked; apiFails makes the API server
		// fail at start instead. scraperStopsAlone makes the scraper return by itself at
		// 1s, before any signal.
		scraperStop, apiStop time.Duration
		apiFails             bool
		feedFails            bool // the catalog feed fails at start
		scraperStopsAlone    bool
		closeErr             error
		wantErr              []error
		want                 []event
	}{
		{
			name:        "scraper round in flight, API drains",
			scraperStop: 2 * time.Second, apiStop: 5 * time.Second,
			want: []event{{"scraper stopped", signal + 2*time.Second}, {"API server stopped", signal + 5*time.Second}, {"catalog feed stopped", signal + 5*time.Second}, {"storage closed", signal + 5*time.Second}},
		},
		{
			name:        "API server stops first",
			scraperStop: 3 * time.Second, apiStop: time.Second,
			want: []event{{"API server stopped", signal + time.Second}, {"scraper stopped", signal + 3*time.Second}, {"catalog feed stopped", signal + 3*time.Second}, {"storage closed", signal + 3*time.Second}},
		},
		{
			// --shutdown-delay-duration and a long drain: the storage does not wait.
			name:        "API server drains past the deadline",
			scraperStop: time.Second, apiStop: 90 * time.Second,
			want: []event{{"scraper stopped", signal + time.Second}, {"catalog feed stopped", signal + storageCloseDeadline}, {"storage closed", signal + storageCloseDeadline}, {"API server stopped", signal + 90*time.Second}},
		},
		{
			// No write may follow Close, however long the scraper takes.
			name:        "scraper stops past the deadline",
			scraperStop: 25 * time.Second, apiStop: time.Second,
			want: []event{{"API server stopped", signal + time.Second}, {"scraper stopped", signal + 25*time.Second}, {"catalog feed stopped", signal + 25*time.Second}, {"storage closed", signal + 25*time.Second}},
		},
		{
			name:     "API server fails at start",
			apiFails: true, scraperStop: time.Second,
			wantErr: []error{errAPI},
			want:    []event{{"API server stopped", 0}, {"scraper stopped", time.Second}, {"catalog feed stopped", time.Second}, {"storage closed", time.Second}},
		},
		{
			name:      "catalog feed fails at start",
			feedFails: true, scraperStop: time.Second, apiStop: 2 * time.Second,
			wantErr: []error{errFeed},
			want:    []event{{"catalog feed stopped", 0}, {"scraper stopped", time.Second}, {"API server stopped", 2 * time.Second}, {"storage closed", 2 * time.Second}},
		},
		{
			name:              "scraper returns by itself",
			scraperStopsAlone: true, apiStop: time.Second,
			want: []event{{"scraper stopped", time.Second}, {"API server stopped", 2 * time.Second}, {"catalog feed stopped", 2 * time.Second}, {"storage closed", 2 * time.Second}},
		},
		{
			name:        "closing the storage fails",
			scraperStop: time.Second, apiStop: 2 * time.Second, closeErr: errClose,
			wantErr: []error{errClose},
			want:    []event{{"scraper stopped", signal + time.Second}, {"API server stopped", signal + 2*time.Second}, {"catalog feed stopped", signal + 2*time.Second}, {"storage closed", signal + 2*time.Second}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				record, events := recorder(&mu)
				var closed bool
				scrape := func(ctx context.Context) error {
					defer record("scraper stopped")
					if tc.scraperStopsAlone {
						time.Sleep(time.Second)
						return nil
					}
					// One write per resolution until told to stop, then the round in flight.
					tick := time.NewTicker(15 * time.Second)
					defer tick.Stop()
					for {
						select {
						case <-tick.C:
							mu.Lock()
							if closed {
								t.Error("scraper wrote after the storage closed")
							}
							mu.Unlock()
						case <-ctx.Done():
							time.Sleep(tc.scraperStop)
							return nil
						}
					}
				}
				serveAPI := func(ctx context.Context) error {
					defer record("API server stopped")
					if tc.apiFails {
						return errAPI
					}
					<-ctx.Done()
					time.Sleep(tc.apiStop)
					return nil
				}
				feed := func(ctx context.Context) error {
					defer record("catalog feed stopped")
					if tc.feedFails {
						return errFeed
					}
					<-ctx.Done()
					mu.Lock()
					if closed {
						t.Error("the catalog feed ran after the storage closed")
					}
					mu.Unlock()
					return nil
				}
				closeStorage := func() error {
					record("storage closed")
					mu.Lock()
					closed = true
					mu.Unlock()
					return tc.closeErr
				}

				ctx, cancel := context.WithTimeout(t.Context(), signal)
				defer cancel()
				err := runThenClose(ctx, testlog.New(t), components{scrape: scrape, serveAPI: serveAPI, feed: feed, closeStorage: closeStorage}, storageCloseDeadline)
				if len(tc.wantErr) == 0 && err != nil {
					t.Errorf("runThenClose = %v, want nil", err)
				}
				for _, want := range tc.wantErr {
					if !errors.Is(err, want) {
						t.Errorf("runThenClose = %v, want it to wrap %v", err, want)
					}
				}
				if diff := cmp.Diff(tc.want, events()); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestRunThenCloseWaitsForRollups checks that the storage closes only once the rollup job
// has returned, however long its batch in flight takes, and that the job is asked to stop
// with the scraper.
func TestRunThenCloseWaitsForRollups(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const signal, rollupStop = 10 * time.Second, 25 * time.Second
		var mu sync.Mutex
		record, events := recorder(&mu)
		wait := func(ctx context.Context) error { <-ctx.Done(); return nil }
		ctx, cancel := context.WithTimeout(t.Context(), signal)
		defer cancel()
		err := runThenClose(ctx, testlog.New(t), components{
			scrape: wait, serveAPI: wait, feed: wait,
			rollup: func(ctx context.Context) error {
				<-ctx.Done()
				record("rollup asked to stop")
				time.Sleep(rollupStop) // a batch in flight
				record("rollup job stopped")
				return nil
			},
			closeStorage: func() error { record("storage closed"); return nil },
		}, storageCloseDeadline)
		if err != nil {
			t.Errorf("runThenClose = %v", err)
		}
		want := []event{{"rollup asked to stop", signal}, {"rollup job stopped", signal + rollupStop}, {"storage closed", signal + rollupStop}}
		if diff := cmp.Diff(want, events()); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// recorder returns a function that records an event at the time since now, under mu, and
// one that returns the events so far.
func recorder(mu *sync.Mutex) (record func(what string), events func() []event) {
	start := time.Now()
	var evs []event
	record = func(what string) {
		mu.Lock()
		defer mu.Unlock()
		evs = append(evs, event{what, time.Since(start)})
	}
	events = func() []event {
		mu.Lock()
		defer mu.Unlock()
		return evs
	}
	return record, events
}
