package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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

// TestDiskFull runs Hindsight on a small tmpfs with a 30-second block range, so that the
// head is due for compaction at every pass of the TSDB's minutely loop, and fills the
// volume in two steps: to just above Hindsight's reserve (compactions stop, appends go on
// and head chunks are m-mapped into the write buffer), then to just below it. Appends
// must pause (counted, reported by the storage health), the current window must go on
// being served from memory, and Hindsight must not crash while the disk stays full across
// passes due for a head compaction, nor when it restarts while the disk is still full:
// the shutdown flushes the buffered head chunks (the write that panics Prometheus on a
// full disk; the test checks that it happened), the restart serves every pod, and kubectl
// top and an HPA keep working. Once space returns, appends and compactions resume by
// themselves and the store holds the samples written after.
func TestDiskFull(t *testing.T) {
	t.Parallel() // see doc.go
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI and the project's machines run as root)")
	}
	c := cluster.New(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	createFleet(ctx, t, c, smokePods)

	dir := filepath.Join(c.Dir, "data", "small-volume")
	// 1 GiB: a compaction needs 512 MiB free (the block writer preallocates its chunk
	// file), so that the head compacts while there is space. tmpfs takes memory only for
	// what is written; the filler writes about 1 GiB of it.
	mountTmpfs(t, dir, "1g")

	const resolution = 10 * time.Second
	// A 30-second block range: the head is compactable once it spans 45 seconds, so the
	// TSDB's minutely pass compacts it every time.
	const blockRange = 30 * time.Second
	opts := cluster.HindsightOptions{Resolution: resolution, StorageDir: dir, Register: true,
		ExtraArgs: []string{"--storage-block-duration=" + blockRange.String()}}
	h, hc := startHindsight(ctx, t, c, opts, 0)
	admin, err := adminHTTP(c)
	if err != nil {
		t.Fatal(err)
	}
	metric := func(name string) float64 {
		t.Helper()
		v, err := gauge(ctx, admin, h.Port, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	writable := func(want float64) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			v, err := gauge(ctx, admin, h.Port, "hindsight_storage_writable")
			return err == nil && v == want, err
		}
	}
	alive := func(when string) {
		t.Helper()
		if done, err := h.Exited(); done {
			t.Fatalf("Hindsight exited %s: %v\n%s", when, err, h.Tail(8192))
		}
	}
	tsdbDir := filepath.Join(dir, "tsdb")
	if err := cluster.Poll(ctx, 3*time.Minute, time.Second, "a head compaction with space", func(context.Context) (bool, error) {
		return countBlocks(tsdbDir) > 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	chunksDir := filepath.Join(tsdbDir, "chunks_head")
	t.Logf("with space: %d blocks, head chunks %d bytes written, %.0f bytes free, reserve %.0f bytes",
		countBlocks(tsdbDir), writtenBytes(chunksDir), metric("hindsight_storage_free_bytes"), metric("hindsight_storage_reserve_bytes"))

	// Nearly full first: 4 MiB above the reserve, far below what a compaction needs.
	// Appends go on and compactions stop, so no head truncation flushes the head-chunk
	// file; the TSDB's minutely pass m-maps the chunks cut since (one per series every
	// block range) into the head-chunk write buffer. (It did not before appends went
	// through the head's appender while compactions are off: the wait below timed out.)
	// Once the disk is full, the shutdown must flush them: the head-chunk write that
	// panics Prometheus on a full disk.
	reserve := uint64(metric("hindsight_storage_reserve_bytes"))
	nearly := filepath.Join(dir, "filler-nearly")
	if err := fillTo(nearly, dir, reserve+4<<20); err != nil {
		t.Fatal(err)
	}
	mmapped := metric("prometheus_tsdb_mmap_chunks_total")
	nearlyAt := time.Now()
	if err := cluster.Poll(ctx, 3*time.Minute, time.Second, "head chunks m-mapped while compactions are off", func(ctx context.Context) (bool, error) {
		v, err := gauge(ctx, admin, h.Port, "prometheus_tsdb_mmap_chunks_total")
		return v > mmapped, err
	}); err != nil {
		t.Fatal(err)
	}
	if w, err := gauge(ctx, admin, h.Port, "hindsight_storage_writable"); err != nil || w != 1 {
		t.Fatalf("nearly full (4 MiB above the reserve): writable %v %v, want 1", w, err)
	}
	t.Logf("nearly full: %.0f chunks m-mapped %s after compactions stopped, head chunks %d bytes written",
		metric("prometheus_tsdb_mmap_chunks_total")-mmapped, time.Since(nearlyAt).Round(time.Second), writtenBytes(chunksDir))

	// Then fill the volume to 1 MiB below the reserve, as Hindsight's own growth would.
	filler := filepath.Join(dir, "filler")
	if err := fillTo(filler, dir, reserve-1<<20); err != nil {
		t.Fatal(err)
	}
	filledAt := time.Now()
	if err := cluster.Poll(ctx, 3*resolution, time.Second, "appends paused", writable(0)); err != nil {
		t.Fatal(err)
	}
	t.Logf("appends paused %s after the volume filled up: %.0f bytes free", time.Since(filledAt).Round(100*time.Millisecond), metric("hindsight_storage_free_bytes"))
	code, body, err := get(ctx, admin, h.Port, "/readyz/storage-writable")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusInternalServerError || !strings.Contains(body, "below the reserve") {
		t.Errorf("GET /readyz/storage-writable: %d %q, want 500 naming the reserve", code, body)
	}
	if code, body, err := get(ctx, admin, h.Port, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /readyz with a full disk: %d %q %v; want 200, the window is still served", code, body, err)
	}
	blocksFull, chunksFull := countBlocks(tsdbDir), writtenBytes(chunksDir)

	// Stay full for 75 seconds: at least one minutely pass with the head due for
	// compaction. The window keeps moving all along.
	for end := time.Now().Add(2*blockRange + 15*time.Second); time.Now().Before(end); {
		since := time.Now()
		if err := cluster.Poll(ctx, 3*resolution, time.Second, "a window newer than the last check", newerWindow(hc, since)); err != nil {
			t.Fatal(err)
		}
		alive("while the disk is full")
	}
	free := metric("hindsight_storage_free_bytes")
	dropped := counter(ctx, t, admin, h.Port, "hindsight_storage_dropped_samples_total", `reason="low_disk_space"`)
	t.Logf("after %s full: alive, %.0f bytes free, %.0f samples not stored, %d blocks (%d when the disk filled), head chunks %d bytes written (%d when the disk filled)",
		time.Since(filledAt).Round(time.Second), free, dropped, countBlocks(tsdbDir), blocksFull, writtenBytes(chunksDir), chunksFull)
	if dropped == 0 {
		t.Error("no samples counted as not stored while the disk was full")
	}
	if free >= float64(reserve) {
		t.Errorf("%.0f bytes free, not below the reserve %d: the test did not keep the disk full", free, reserve)
	}
	if n := countBlocks(tsdbDir); n > blocksFull {
		t.Errorf("%d blocks after the disk filled, %d before: a compaction ran on a full disk", n, blocksFull)
	}

	// Restart while the disk is still full: the shutdown flushes the buffered head chunks.
	chunksBefore := writtenBytes(chunksDir)
	if err := h.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop while full: %v\n%s", err, h.Tail(8192))
	}
	chunksAfter := writtenBytes(chunksDir)
	t.Logf("stopped while full: head chunks %d bytes written, %d before the stop; %.0f bytes free", chunksAfter, chunksBefore, freeBytes(t, dir))
	if chunksAfter <= chunksBefore {
		t.Errorf("the shutdown on a full disk wrote no head chunks (%d bytes written before, %d after): the test missed the head-chunk flush", chunksBefore, chunksAfter)
	}
	restartAt := time.Now()
	if err := c.RestartHindsight(ctx, h); err != nil {
		t.Fatalf("restart while full: %v", err)
	}
	if _, err := firstAnswer(ctx, hc, len(smokePods), time.Minute); err != nil {
		t.Fatalf("restart while full: %v\n%s", err, h.Tail(8192))
	}
	t.Logf("restarted while full: every pod served %s after the start", time.Since(restartAt).Round(100*time.Millisecond))
	if err := cluster.Poll(ctx, 3*resolution, time.Second, "appends paused after the restart", writable(0)); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the restart: %.0f bytes free", metric("hindsight_storage_free_bytes"))
	out, err := c.Kubectl(ctx, "top", "nodes", "--no-headers")
	if err != nil {
		t.Fatalf("kubectl top nodes while full: %v", err)
	}
	t.Logf("kubectl top nodes while full:\n%s", out)
	if out, err := c.Kubectl(ctx, "top", "pods", "-A", "--no-headers"); err != nil || len(strings.TrimSpace(out)) == 0 {
		t.Fatalf("kubectl top pods while full: %v %q", err, out)
	}
	if err := createLoad(ctx, c); err != nil {
		t.Fatal(err)
	}
	hpaAt := time.Now()
	if err := scaleUp(ctx, c); err != nil {
		t.Fatalf("HPA on a full disk: %v", err)
	}
	t.Logf("HPA on a full disk: read a utilisation and scaled to 4 in %s", time.Since(hpaAt).Round(time.Second))
	alive("after the HPA test on a full disk")
	t.Logf("after the HPA test: %.0f bytes free, %.0f samples not stored since the restart", metric("hindsight_storage_free_bytes"),
		counter(ctx, t, admin, h.Port, "hindsight_storage_dropped_samples_total", `reason="low_disk_space"`))
	if n := countBlocks(tsdbDir); n > blocksFull {
		t.Errorf("%d blocks after the HPA test on a full disk, %d before: a compaction ran on a full disk", n, blocksFull)
	}

	for _, f := range []string{filler, nearly} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	freedAt := time.Now()
	if err := cluster.Poll(ctx, 3*resolution, time.Second, "storage writable again", writable(1)); err != nil {
		t.Fatal(err)
	}
	t.Logf("writes resumed %s after space returned", time.Since(freedAt).Round(100*time.Millisecond))
	if err := cluster.Poll(ctx, 3*time.Minute, time.Second, "a head compaction once space returned", func(context.Context) (bool, error) {
		return countBlocks(tsdbDir) > blocksFull, nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("a head compaction %s after space returned: %d blocks", time.Since(freedAt).Round(time.Second), countBlocks(tsdbDir))
	if err := h.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Nothing on disk is corrupt, and samples written after the space came back are there.
	samples := readSeries(t, tsdbDir, filledAt.Add(-time.Hour), time.Now())
	if len(samples) == 0 {
		t.Fatal("no series stored")
	}
	late := 0
	for _, ts := range samples {
		if len(ts) > 0 && ts[len(ts)-1].After(freedAt) {
			late++
		}
	}
	// Series of pods gone before the space returned (the HPA's scaled-down replicas) end
	// earlier; every node and smoke pod goes on.
	if late < len(smokePods) {
		t.Errorf("%d of %d series have a sample after the space returned, want at least %d", late, len(samples), len(smokePods))
	}
}

// countBlocks returns how many persisted blocks (directories with a meta.json) dir holds.
func countBlocks(dir string) int {
	es, _ := os.ReadDir(dir)
	n := 0
	for _, e := range es {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); e.IsDir() && err == nil {
			n++
		}
	}
	return n
}

// writtenBytes returns how many bytes have been written to the files dir holds (not its
// subdirectories): each file up to its last non-zero byte. Head-chunk files are
// preallocated (128 KiB of zeros) and written sequentially, so their size says nothing.
func writtenBytes(dir string) int64 {
	es, _ := os.ReadDir(dir)
	var n int64
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		n += int64(len(bytes.TrimRight(b, "\x00")))
	}
	return n
}

// freeBytes returns the bytes free on dir's file system for an unprivileged writer.
func freeBytes(t *testing.T, dir string) float64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return float64(st.Bavail * uint64(st.Bsize))
}

// counter reads one labelled sample (name{labels}) from Hindsight's /metrics.
func counter(ctx context.Context, t *testing.T, hc *http.Client, port int, name, labels string) float64 {
	t.Helper()
	code, body, err := get(ctx, hc, port, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	prefix := name + "{" + labels + "} "
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, prefix), "%g", &v); err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("%s{%s} not in /metrics", name, labels)
	return 0
}

// fillTo writes zeros to path until dir's file system has at most leave bytes free.
func fillTo(path, dir string, leave uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return fmt.Errorf("statfs %s: %w", dir, err)
		}
		free := st.Bavail * uint64(st.Bsize)
		if free <= leave {
			return f.Sync()
		}
		n := min(uint64(len(buf)), free-leave)
		if _, err := f.Write(buf[:n]); err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
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
