package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ListVersionDirs lists the versions published in TF Serving's
// models/<name>/<version>/ layout next to dir, the directory of the
// registered version named version: the numeric directories beside it
// that hold marker (the model file, so a half-copied version is not
// taken), in ascending order. A version registered from another
// layout (dir not named after its version) publishes nothing and is an
// error.
func ListVersionDirs(dir, version, marker string) ([]string, error) {
	if filepath.Base(dir) != version {
		return nil, fmt.Errorf("%s is not in a <base>/<version> layout", dir)
	}
	base := filepath.Dir(dir)
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := strconv.ParseUint(e.Name(), 10, 63); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, e.Name(), marker)); err == nil {
			out = append(out, e.Name())
		}
	}
	// The registry's order of numeric versions: shorter first, then by
	// digits (so "9" < "10").
	slices.SortFunc(out, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	return out, nil
}

// VersionDir is the directory of version v beside dir in the
// models/<name>/<version>/ layout.
func VersionDir(dir, v string) string { return filepath.Join(filepath.Dir(dir), v) }
