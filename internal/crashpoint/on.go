//go:build crashpoints

package crashpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Enabled reports whether this binary was built with -tags crashpoints.
const Enabled = true

var (
	parse sync.Once
	point string // the name EnvVar asks for; "" for none
	nth   int64  // at which hit
	hits  atomic.Int64
)

func target() (string, int64) {
	parse.Do(func() {
		v := os.Getenv(EnvVar)
		name, n, ok := strings.Cut(v, ":")
		nth = 1
		if ok {
			i, err := strconv.ParseInt(n, 10, 64)
			if err != nil || i < 1 {
				return // malformed: no crash point
			}
			nth = i
		}
		point = name
	})
	return point, nth
}

// Hit kills the process with SIGKILL when EnvVar names this point and this is its n-th hit.
func Hit(name string) {
	if p, n := target(); p != "" && p == name && hits.Add(1) == n {
		kill()
	}
}

// OnOpen kills the process when something opens a file or directory directly inside dir
// whose name satisfies match, from now until stop is called, when EnvVar names this point
// (its count is ignored). It is for a moment inside a library (the TSDB's head snapshot)
// that lasts a few milliseconds, too short to poll for: the kernel (fanotify, which needs
// CAP_SYS_ADMIN) holds the opener inside open(2) until the watcher has decided, so the
// kill lands while the open is pending, every time. Opens that do not match are allowed at
// once. A watcher that cannot start ends the process with exit status 97 and says why on
// stderr, so that a test expecting the kill fails loudly.
func OnOpen(name, dir string, match func(base string) bool) (stop func()) {
	if p, _ := target(); p == "" || p != name {
		return func() {}
	}
	f, err := watchOpens(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "crashpoint %s: %v\n", name, err)
		os.Exit(97)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return // stopped
			}
			for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= n; {
				m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
				if m.Event_len == 0 {
					break
				}
				off += int(m.Event_len)
				if m.Fd < 0 {
					continue // the queue overflowed: nothing to answer
				}
				path, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(m.Fd)))
				if match(filepath.Base(path)) {
					kill()
				}
				resp := unix.FanotifyResponse{Fd: m.Fd, Response: unix.FAN_ALLOW}
				_, _ = f.Write(unsafe.Slice((*byte)(unsafe.Pointer(&resp)), unsafe.Sizeof(resp)))
				_ = unix.Close(int(m.Fd))
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { _ = f.Close() }) }
}

// watchOpens returns a fanotify group that asks permission for every open of dir and of
// the files and directories directly inside it.
func watchOpens(dir string) (*os.File, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init (needs CAP_SYS_ADMIN): %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM|unix.FAN_ONDIR|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("fanotify_mark %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), "fanotify"), nil
}

func kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; never return to the caller
}
