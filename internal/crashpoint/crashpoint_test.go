package crashpoint_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hindsight-metrics/hindsight/internal/crashpoint"
	"github.com/hindsight-metrics/hindsight/internal/crashpoint/crashtest"
)

const (
	childEnv  = "HINDSIGHT_CRASHPOINT_TEST_CHILD"
	onOpenEnv = "HINDSIGHT_CRASHPOINT_TEST_ONOPEN" // the directory the OnOpen child watches
)

// TestMain runs the children: three hits of "test.point", printing the count before each,
// or onOpenChild.
func TestMain(m *testing.M) {
	if dir := os.Getenv(onOpenEnv); dir != "" {
		onOpenChild(dir)
	}
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
	dir := t.TempDir()
	stop := crashpoint.OnOpen("test.point", dir, func(string) bool { return true })
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	stop()
}

// onOpenChild watches dir for opens of "*.tmp" and prints a line before each step: it
// opens "plain" (not matching), creates and lists "snap.tmp" (matching, the kill), then,
// if still alive, stops the watcher and opens "late.tmp" (after stop: no kill).
func onOpenChild(dir string) {
	stop := crashpoint.OnOpen("test.point", dir, func(base string) bool { return strings.HasSuffix(base, ".tmp") })
	step := func(name string, open func(string) error) {
		fmt.Printf("open %s\n", name)
		if err := open(filepath.Join(dir, name)); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(1)
		}
	}
	createFile := func(p string) error {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		return f.Close()
	}
	listDir := func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		_, err := os.ReadDir(p)
		return err
	}
	step("plain", createFile)
	if os.Getenv(crashpoint.EnvVar) == "test.point:stop" {
		stop()
	}
	step("snap.tmp", listDir)
	stop()
	step("late.tmp", createFile)
	fmt.Println("survived")
	os.Exit(0)
}

// TestOnOpen checks that OnOpen kills while a matching open is pending (the matching
// entry exists, the steps after it never run), lets other opens through, and does nothing
// when unarmed or stopped.
func TestOnOpen(t *testing.T) {
	t.Parallel()
	bin := crashtest.Binary(t)
	for _, tc := range []struct {
		env      string
		lastLine string
	}{
		{"test.point", "open snap.tmp"},
		{"test.point:3", "open snap.tmp"}, // the count is ignored
		{"test.point:stop", "survived"},   // stopped before the matching open
		{"other.point", "survived"},
		{"", "survived"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd := exec.Command(bin, "-test.run=^$")
			cmd.Env = append(os.Environ(), onOpenEnv+"="+dir, crashtest.Env(tc.env))
			out, err := cmd.Output()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if killed := crashtest.Killed(err); killed != (tc.lastLine != "survived") || last != tc.lastLine {
				t.Fatalf("%s: killed %v (%v), output %q; want last line %q", crashtest.Env(tc.env), killed, err, out, tc.lastLine)
			}
			for _, name := range []string{"plain", "snap.tmp"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}
