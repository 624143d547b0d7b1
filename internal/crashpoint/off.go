//go:build !crashpoints

package crashpoint

// Enabled reports whether this binary was built with -tags crashpoints.
const Enabled = false

// Hit does nothing in a normal build.
func Hit(string) {}

// OnOpen does nothing in a normal build.
func OnOpen(string, string, func(string) bool) (stop func()) { return func() {} }
