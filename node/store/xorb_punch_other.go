//go:build !linux

package store

import (
	"errors"
	"os"
)

var errNoPunch = errors.New("hole punching is not supported on this platform")

// punchHole is unsupported here: dropped xorb chunks keep their space until
// the xorb is removed.
func punchHole(f *os.File, off, n int64) error { return errNoPunch }

func punchUnsupported(err error) bool { return errors.Is(err, errNoPunch) }
