package tsdb

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
)

// ErrLocked is returned (wrapped) by Open when another process, or another DB in this
// process, holds the storage directory. The error names the lock file and the holder.
var ErrLocked = errors.New("tsdb: storage directory in use")

// lockFileName is the file under Config.Dir that Open locks (flock, exclusive, never
// waiting) for as long as the DB is open. While locked it holds a line naming the holder:
// "pid=<pid> host=<hostname> since=<RFC 3339 time>"; Close empties it.
//
// The Prometheus TSDB locks Dir/tsdb/lock itself, but only after it has removed temporary
// directories and checkpoints, which may be the first opener's compaction or checkpoint
// in progress. Locking Dir first keeps a second opener from touching anything.
const lockFileName = "hindsight.lock"

// maxHolderLen bounds how much of a lock file's content an error quotes.
const maxHolderLen = 256

// holderLine describes this process for the lock file.
func holderLine(now time.Time) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("pid=%d host=%s since=%s\n", os.Getpid(), host, now.UTC().Format(time.RFC3339))
}

// readHolder returns the holder line of an open lock file, or "an unknown holder" when it
// is empty (the holder has not written it yet) or unreadable.
func readHolder(f io.ReaderAt) string {
	buf := make([]byte, maxHolderLen)
	n, _ := f.ReadAt(buf, 0)
	s := strings.TrimSpace(string(buf[:n]))
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return "an unknown holder"
	}
	return s
}

// lockedError builds the error of a failed lock attempt on path.
func lockedError(path, holder string, err error) error {
	return fmt.Errorf("%w: %s is held by %s: %w", ErrLocked, path, holder, err)
}
