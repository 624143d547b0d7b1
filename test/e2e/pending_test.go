package e2e

import (
	"os"
	"testing"
)

// pendingEnv runs the end-to-end tests that were written but have not yet passed a run
// against a cluster. They are left out of make test until one has, so that an unproven
// test cannot stop everything else from landing; the issue notes name each one.
const pendingEnv = "HINDSIGHT_E2E_PENDING"

// pending skips t unless pendingEnv is 1. Take the call out once t has passed a run.
func pending(t *testing.T) {
	t.Helper()
	if os.Getenv(pendingEnv) != "1" {
		t.Skipf("not yet run against a cluster: run it with %s=1 (issue 10's note)", pendingEnv)
	}
}
