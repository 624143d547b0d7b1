package cluster

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Listener is a listening TCP socket of a cluster process.
type Listener struct {
	Process string
	Addr    net.IP
	Port    int
}

// Listeners returns every listening TCP socket (IPv4 and IPv6) held by the cluster's
// processes, read from /proc. Tests use it to check that nothing listens beyond 127.0.0.1.
func (c *Cluster) Listeners() ([]Listener, error) {
	listen, err := listeningSockets()
	if err != nil {
		return nil, err
	}
	var out []Listener
	for _, p := range c.procs {
		if done, _ := p.Exited(); done {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.PID()))
		if err != nil {
			return nil, fmt.Errorf("read fds of %s: %w", p.name, err)
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", p.PID()), fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			if l, ok := listen[inode]; ok {
				l.Process = p.name
				out = append(out, l)
			}
		}
	}
	return out, nil
}

// listeningSockets maps socket inode → address of every TCP socket in state LISTEN.
func listeningSockets() (map[string]Listener, error) {
	m := map[string]Listener{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", f, err)
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A = TCP_LISTEN
				continue
			}
			ip, port, err := parseProcAddr(fields[1])
			if err != nil {
				_ = fh.Close()
				return nil, fmt.Errorf("parse %s: %w", f, err)
			}
			m[fields[9]] = Listener{Addr: ip, Port: port}
		}
		_ = fh.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
	}
	return m, nil
}

// parseProcAddr parses "0100007F:1F90": a little-endian-per-word hex IP and a hex port.
func parseProcAddr(s string) (net.IP, int, error) {
	hostHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hostHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 { // each 32-bit word is in host (little-endian) order
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("bad port in %q", s)
	}
	return ip, int(port), nil
}
