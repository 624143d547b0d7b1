package fleet

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves every node of a fleet, node i on its own TLS port on 127.0.0.1, at
// /metrics/resource (and /healthz). Bodies are built once per node and housekeeping tick
// and kept, plain and gzipped, so a second scraper of the same node costs a copy.
type Server struct {
	spec  Spec
	nodes []*nodeState
	ports map[int]int // local port → node
	lns   []net.Listener
	srv   *http.Server
	now   func() time.Time

	requests atomic.Int64
	builds   atomic.Int64
}

type nodeState struct {
	body *NodeBody
	port int

	mu   sync.Mutex
	tick time.Time
	text []byte
	gz   []byte
}

type nodeKey struct{}

// StatsPath answers, on every node's port, the requests answered and bodies built so far:
// {"requests":N,"bodies":M}.
const StatsPath = "/fleet/stats"

// Listen opens one listener per node on 127.0.0.1 (ports chosen by the kernel) and returns
// a Server ready to Serve. cert is the kubelets' serving certificate.
func Listen(s Spec, cert tls.Certificate) (*Server, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	fs := &Server{spec: s, ports: make(map[int]int, s.Nodes), now: time.Now}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	for i := range s.Nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(fmt.Errorf("fleet: listen for node %d: %w", i, err), fs.closeListeners())
		}
		port := ln.Addr().(*net.TCPAddr).Port
		fs.lns = append(fs.lns, tls.NewListener(ln, tlsCfg))
		fs.ports[port] = i
		fs.nodes = append(fs.nodes, &nodeState{body: s.Node(i), port: port})
	}
	fs.srv = &http.Server{
		Handler:           fs,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
				if i, ok := fs.ports[a.Port]; ok {
					return context.WithValue(ctx, nodeKey{}, i)
				}
			}
			return ctx
		},
	}
	return fs, nil
}

// Ports maps every node's name to its port.
func (fs *Server) Ports() map[string]int {
	m := make(map[string]int, len(fs.nodes))
	for i, n := range fs.nodes {
		m[NodeName(i)] = n.port
	}
	return m
}

// Serve serves every listener until ctx ends, then shuts down.
func (fs *Server) Serve(ctx context.Context) error {
	errc := make(chan error, len(fs.lns))
	for _, ln := range fs.lns {
		go func() { errc <- fs.srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			_ = fs.srv.Close()
			return fmt.Errorf("fleet: serve: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fs.srv.Shutdown(sctx)
}

// Counts are the requests answered and the bodies built so far.
func (fs *Server) Counts() (requests, builds int64) { return fs.requests.Load(), fs.builds.Load() }

func (fs *Server) closeListeners() error {
	var errs []error
	for _, ln := range fs.lns {
		errs = append(errs, ln.Close())
	}
	return errors.Join(errs...)
}

func (fs *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		_, _ = w.Write([]byte("ok"))
		return
	case StatsPath:
		req, builds := fs.Counts()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"requests":%d,"bodies":%d}`+"\n", req, builds)
		return
	}
	i, ok := r.Context().Value(nodeKey{}).(int)
	if !ok || r.URL.Path != "/metrics/resource" {
		http.NotFound(w, r)
		return
	}
	fs.requests.Add(1)
	n := fs.nodes[i]
	gz := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
	body := fs.body(n, gz)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// body is node n's body at its current tick, built when the tick has moved on.
func (fs *Server) body(n *nodeState, gz bool) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	tick := Tick(n.body.node, fs.now())
	if !tick.Equal(n.tick) || n.text == nil {
		// A new buffer: a response may still be writing the old one.
		n.text = n.body.Append(make([]byte, 0, len(n.text)), tick)
		n.gz = nil
		n.tick = tick
		fs.builds.Add(1)
	}
	if !gz {
		return n.text
	}
	if n.gz == nil {
		var b bytes.Buffer
		b.Grow(len(n.text) / 4)
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed) // the fleet's cost, not the kubelet's
		_, _ = zw.Write(n.text)
		_ = zw.Close()
		n.gz = b.Bytes()
	}
	return n.gz
}
