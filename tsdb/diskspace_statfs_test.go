//go:build linux || darwin

package tsdb

import "testing"

// TestStatfsFree reads the free space of a real directory.
func TestStatfsFree(t *testing.T) {
	free, err := statfsFree(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if free == 0 {
		t.Errorf("statfsFree = 0 on the test's temporary directory")
	}
	t.Logf("%d bytes free in the temporary directory", free)
}
