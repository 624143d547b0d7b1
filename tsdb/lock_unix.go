//go:build unix

package tsdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// dirLock is an exclusive flock on Dir/hindsight.lock. The kernel releases it when the
// process exits, however it exits, so a crashed holder never blocks the next start.
type dirLock struct {
	f *os.File
}

// lockDir takes the lock of dir without waiting: when another open file (in this process or
// another) holds it, it fails at once with ErrLocked. It records the holder in the file;
// failing to write that (a full disk) is not an error.
func lockDir(dir string, now time.Time) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readHolder(f)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lockedError(path, holder, err)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(holderLine(now)), 0)
	}
	return &dirLock{f: f}, nil
}

// release empties the lock file, so that it names no process that is gone, and unlocks it.
// The file stays: removing it would let a waiting opener lock a file that no longer has a
// name while a third one creates and locks a new one.
func (l *dirLock) release() error {
	_ = l.f.Truncate(0)
	return errors.Join(flock(l.f, syscall.LOCK_UN), l.f.Close())
}

// flock retries on EINTR, which a signal may cause even with LOCK_NB.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
