//go:build linux || darwin

package tsdb

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// statfsFree returns the bytes of dir's file system available to an unprivileged user
// (f_bavail × f_bsize): root's reserved blocks do not count, as the TSDB may not run as root.
func statfsFree(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
