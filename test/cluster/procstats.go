package cluster

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// ProcStats is a process's resident memory and the CPU time it has used so far.
type ProcStats struct {
	RSSBytes   int64
	CPUSeconds float64
	// PeakRSSBytes is the largest RSS so far (VmHWM); AnonRSSBytes the anonymous part of
	// RSSBytes (RssAnon: heap, stacks), the rest being mapped files (RssFile, RssShmem).
	PeakRSSBytes, AnonRSSBytes int64
}

// Stats reads the process's RSS and CPU time from /proc.
func (p *Process) Stats() (ProcStats, error) {
	return procStats(p.PID())
}

func procStats(pid int) (ProcStats, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStats{}, fmt.Errorf("read stat: %w", err)
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are fixed.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcStats{}, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return ProcStats{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	// After ')': state(0) … utime(11) stime(12) … rss(21) in pages.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	rss, err3 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ProcStats{}, fmt.Errorf("parse /proc/%d/stat: bad number", pid)
	}
	st := ProcStats{RSSBytes: rss * int64(os.Getpagesize()), CPUSeconds: float64(utime+stime) / clockTicks}
	if st.PeakRSSBytes, err = statusKB(pid, "VmHWM"); err != nil {
		return ProcStats{}, err
	}
	if st.AnonRSSBytes, err = statusKB(pid, "RssAnon"); err != nil {
		return ProcStats{}, err
	}
	return st, nil
}

// statusKB reads a field such as "VmHWM:   123456 kB" from /proc/<pid>/status, in bytes.
func statusKB(pid int, field string) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("parse /proc/%d/status: %s %q", pid, field, rest)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/%d/status: %s: %w", pid, field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("parse /proc/%d/status: no %s", pid, field)
}
