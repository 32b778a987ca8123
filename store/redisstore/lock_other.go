//go:build !unix

package redisstore

import (
	"fmt"
	"os"
)

// lockDir opens the lock file; without flock, keeping two processes off
// one WAL dir is up to the operator.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("WAL lock: %w", err)
	}
	return f, nil
}
