package apiserver

import (
	"testing"

	"go.uber.org/goleak"
	"k8s.io/apiserver/pkg/server/healthz"
)

func TestMain(m *testing.M) {
	// The generic apiserver's "log" health check starts, on its first call, a process-lifetime
	// goroutine (wait.Forever(klog.Flush, ...)) that nothing can stop. Start it here, before
	// the snapshot goleak ignores, so every goroutine a test leaves behind is still reported.
	_ = healthz.LogHealthz.Check(nil)
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
