//go:build !(linux || darwin)

package tsdb

import (
	"errors"
	"fmt"
)

// statfsFree is not implemented here: appends never pause for lack of space.
func statfsFree(dir string) (uint64, error) {
	return 0, fmt.Errorf("free space of %s: %w", dir, errors.ErrUnsupported)
}
