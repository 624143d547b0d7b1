//go:build !unix

package tsdb

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/tsdb/fileutil"
)

// dirLock is the Prometheus file lock on Dir/hindsight.lock. Outside Unix the holder is not
// recorded, since the locked file may not be readable by the next opener.
type dirLock struct {
	r fileutil.Releaser
}

// lockDir takes the lock of dir without waiting; it fails at once with ErrLocked when held.
func lockDir(dir string, _ time.Time) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	r, _, err := fileutil.Flock(path)
	if err != nil {
		return nil, lockedError(path, "an unknown holder", fmt.Errorf("lock: %w", err))
	}
	return &dirLock{r: r}, nil
}

func (l *dirLock) release() error { return l.r.Release() }
