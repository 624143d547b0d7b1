package tsdb

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helpers[mode](os.Getenv(helperDirEnv)))
	}
	goleak.VerifyTestMain(m)
}
