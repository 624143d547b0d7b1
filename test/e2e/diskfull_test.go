package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/hindsight-metrics/hindsight/test/cluster"
)

// TestDiskFull runs Hindsight on a small tmpfs and fills it. The current window must go on
// being served from memory, the storage must be reported unwritable with the reason, writes
// must resume by themselves once space returns, and the store must open cleanly afterwards.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI and the project's machines run as root)")
	}
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	createFleet(ctx, t, c, smokePods)

	dir := filepath.Join(c.Dir, "data", "small-volume")
	mountTmpfs(t, dir, "128m")

	const resolution = 10 * time.Second
	h, hc := startHindsight(ctx, t, c, cluster.HindsightOptions{Resolution: resolution, StorageDir: dir}, 0)
	admin, err := adminHTTP(c)
	if err != nil {
		t.Fatal(err)
	}
	writable := func(want float64) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			v, err := gauge(ctx, admin, h.Port, "hindsight_storage_writable")
			return err == nil && v == want, err
		}
	}
	if err := cluster.Poll(ctx, time.Minute, time.Second, "storage writable", writable(1)); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(dir, "filler")
	if err := fill(filler); err != nil {
		t.Fatal(err)
	}
	filledAt := time.Now()
	// The WAL's last page in memory and on tmpfs still takes a few small commits, so the
	// first ENOSPC comes when a commit needs a new page: with this tiny fleet, within
	// minutes rather than seconds.
	if err := cluster.Poll(ctx, 5*time.Minute, time.Second, "storage reported unwritable", writable(0)); err != nil {
		t.Fatal(err)
	}
	t.Logf("storage reported unwritable %s after the volume filled up", time.Since(filledAt).Round(100*time.Millisecond))
	code, body, err := get(ctx, admin, h.Port, "/readyz/storage-writable")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusInternalServerError || !strings.Contains(body, "no space left on device") {
		t.Errorf("GET /readyz/storage-writable: %d %q, want 500 naming ENOSPC", code, body)
	}
	if code, body, err := get(ctx, admin, h.Port, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /readyz with a full disk: %d %q %v; want 200, the window is still served", code, body, err)
	}

	// The window keeps moving: a newer timestamp than before the disk filled.
	if err := cluster.Poll(ctx, 3*resolution, time.Second, "a window newer than the full disk", newerWindow(hc, filledAt)); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	if err := cluster.Poll(ctx, 3*resolution, time.Second, "storage writable again", writable(1)); err != nil {
		t.Fatal(err)
	}
	t.Logf("writes resumed %s after space returned", time.Since(freedAt).Round(100*time.Millisecond))
	wait(ctx, t, 2*resolution)
	if err := h.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Nothing on disk is corrupt, and samples written after the space came back are there.
	samples := readSeries(t, filepath.Join(dir, "tsdb"), filledAt.Add(-time.Hour), time.Now())
	if len(samples) == 0 {
		t.Fatal("no series stored")
	}
	for series, ts := range samples {
		if len(ts) == 0 || !ts[len(ts)-1].After(freedAt) {
			t.Errorf("%s: no sample after the space returned (last %v)", series, ts[len(ts)-1:])
		}
	}
}

// mountTmpfs mounts a tmpfs of the given size at dir and unmounts it in t.Cleanup.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fill writes zeros to path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
}

func newerWindow(mc *metricsclient.Clientset, after time.Time) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		l, err := mc.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) == 0 {
			return false, err
		}
		for _, n := range l.Items {
			if !n.Timestamp.After(after) {
				return false, nil
			}
		}
		return true, nil
	}
}

// adminHTTP is an HTTPS client that presents the cluster-admin certificate (Hindsight's
// delegated authentication accepts it, and /metrics needs authorization).
func adminHTTP(c *cluster.Cluster) (*http.Client, error) {
	ca, err := c.PKI.CA()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(c.PKI.Path("admin.crt"), c.PKI.Path("admin.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}

// get fetches a path of Hindsight's port and returns the status and the body.
func get(ctx context.Context, hc *http.Client, port int, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, string(body), err
}

// gauge reads one unlabelled gauge from Hindsight's /metrics.
func gauge(ctx context.Context, hc *http.Client, port int, name string) (float64, error) {
	code, body, err := get(ctx, hc, port, "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		var v float64
		if strings.HasPrefix(line, name+" ") {
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, name+" "), "%g", &v); err != nil {
				return 0, fmt.Errorf("parse %q: %w", line, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s not in /metrics", name)
}
