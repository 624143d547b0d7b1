package crashpoint_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
	"github.com/hindsight-metrics/hindsight/internal/crashpoint/crashtest"
)

const childEnv = "HINDSIGHT_CRASHPOINT_TEST_CHILD"

// TestMain runs the child: three hits of "test.point", printing the count before each.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		for i := 1; i <= 3; i++ {
			fmt.Printf("hit %d\n", i)
			crashpoint.Hit("test.point")
		}
		fmt.Println("survived")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHit arms the child with HINDSIGHT_CRASH_AT values and checks at which hit it dies.
func TestHit(t *testing.T) {
	t.Parallel()
	bin := crashtest.Binary(t)
	for _, tc := range []struct {
		env      string
		lastLine string // the last line printed; "survived" when not killed
	}{
		{"test.point", "hit 1"},
		{"test.point:2", "hit 2"},
		{"test.point:3", "hit 3"},
		{"test.point:4", "survived"}, // never that many hits
		{"other.point", "survived"},
		{"test.point:0", "survived"}, // malformed: no crash point
		{"test.point:x", "survived"},
		{"", "survived"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=1", crashtest.Env(tc.env))
			out, err := cmd.Output()
			last := ""
			for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
				last = sc.Text()
			}
			if killed := crashtest.Killed(err); killed != (tc.lastLine != "survived") || last != tc.lastLine {
				t.Errorf("%s: killed %v (%v), last line %q; want %q", crashtest.Env(tc.env), killed, err, last, tc.lastLine)
			}
		})
	}
}

// TestNormalBuildNeverCrashes: in a binary built without the tag (as under make test), an
// armed Hit returns.
func TestNormalBuildNeverCrashes(t *testing.T) {
	if crashpoint.Enabled {
		t.Log("built with -tags crashpoints: TestHit covers this binary")
		return
	}
	t.Setenv(crashpoint.EnvVar, "test.point")
	crashpoint.Hit("test.point")
	crashpoint.During("test.point", func() bool { return true })()
}
