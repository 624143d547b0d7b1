//go:build !crashpoints

package crashpoint

// Enabled reports whether this binary was built with -tags crashpoints.
const Enabled = false

// Hit does nothing in a normal build.
func Hit(string) {}

// During does nothing in a normal build.
func During(string, func() bool) (stop func()) { return func() {} }
