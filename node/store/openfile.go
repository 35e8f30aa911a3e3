package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openBlobFile opens a blob for reading without registering it with the
// runtime's poller: os.Open makes every descriptor non-blocking and tries
// epoll, which regular files refuse anyway. On the hit path that was a
// fifth of the CPU of a small-file hit (BenchmarkWarmHit). A blocking
// descriptor of a regular file reads, seeks and sendfiles the same.
func openBlobFile(path string) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// openPinned opens the file of e, which the caller pinned, at path. On
// failure it unpins e, and drops it from the index when the file is gone.
// name says which blob or xorb in errors.
func (s *Store) openPinned(e *entry, path, name string) (*os.File, error) {
	f, err := openBlobFile(path)
	if err == nil {
		return f, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpinLocked(e)
	if errors.Is(err, fs.ErrNotExist) {
		s.dropLocked(e, "file missing")
		return nil, fmt.Errorf("%w: %s: file vanished", ErrNotFound, name)
	}
	return nil, fmt.Errorf("store: open %s: %w", name, err)
}
