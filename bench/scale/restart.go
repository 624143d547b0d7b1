package scale

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// restarts stops each server (SIGTERM) and starts it again, and measures the time from the
// start to a complete direct LIST and to a complete `kubectl top pods -A`: Hindsight
// through metrics.k8s.io/v1 (kubectl 1.37), metrics-server through v1beta1 (kubectl 1.34).
func (r *run) restarts(ctx context.Context) error {
	if r.sc.NoRestart {
		return nil
	}
	kubectl := [2]string{r.c.Tools.Kubectl137, r.c.Tools.Kubectl}
	restart := [2]func(context.Context) error{
		func(ctx context.Context) error { return r.c.RestartHindsight(ctx, r.h) },
		func(ctx context.Context) error { return r.c.RestartMetricsServer(ctx, r.ms) },
	}
	for i := range 2 {
		s := &r.res.Servers[i]
		if err := r.procs[i]().Stop(30 * time.Second); err != nil {
			return fmt.Errorf("stop %s: %w", s.Name, err)
		}
		begin := time.Now()
		if err := restart[i](ctx); err != nil {
			return err
		}
		if err := r.waitComplete(ctx, i, 10*r.sc.Resolution+time.Minute); err != nil {
			return fmt.Errorf("%s after its restart: %w", s.Name, err)
		}
		s.StartToList = time.Since(begin)
		last := -1
		if err := cluster.Poll(ctx, 5*time.Minute, 100*time.Millisecond, "complete kubectl top pods -A", func(ctx context.Context) (bool, error) {
			call := time.Now()
			out, err := r.c.KubectlWith(ctx, kubectl[i], "top", "pods", "-A", "--no-headers")
			if err != nil {
				return false, nil // not served through the aggregator yet
			}
			served := map[string]bool{}
			for line := range strings.Lines(out) {
				if f := strings.Fields(line); len(f) == 4 {
					served[f[0]+"/"+f[1]] = true
				}
			}
			if last = r.missing(served, time.Now()); last > 0 {
				return false, nil
			}
			s.StartToTop, s.TopCall = time.Since(begin), time.Since(call)
			return true, nil
		}); err != nil {
			return fmt.Errorf("%s: %w (%d pods missing at the last try)", s.Name, err, last)
		}
		r.logf("%s restarted: complete LIST after %s, complete kubectl top after %s (one call %s)", s.Name,
			s.StartToList.Round(10*time.Millisecond), s.StartToTop.Round(10*time.Millisecond), s.TopCall.Round(10*time.Millisecond))
	}
	return nil
}
