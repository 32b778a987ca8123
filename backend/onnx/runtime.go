package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvLibrary is the environment variable that names the ONNX Runtime shared
// library when the configuration does not.
const EnvLibrary = "MODELGATE_ONNXRUNTIME_LIB"

// DefaultLibrary is where `make onnxruntime` puts the library, relative to
// the repository root.
const DefaultLibrary = ".cache/onnxruntime/libonnxruntime.so.1"

// ErrRuntimeMissing is wrapped by Load's error when the ONNX Runtime shared
// library cannot be found or loaded. Other backends are unaffected.
var ErrRuntimeMissing = errors.New("ONNX Runtime library not available")

var runtime struct {
	mu   sync.Mutex
	path string // the library loaded, once initialised
}

// LibraryPath resolves the library to load: configured, else
// $MODELGATE_ONNXRUNTIME_LIB, else libonnxruntime.so.1 next to the running
// binary, else DefaultLibrary in the working directory or the nearest parent
// directory that has it. It returns the first
// candidate ("" when none is configured and no default exists).
func LibraryPath(configured string) string {
	if configured != "" {
		return configured
	}
	if p := os.Getenv(EnvLibrary); p != "" {
		return p
	}
	// Next to the binary: a deployment ships the library beside it.
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), filepath.Base(DefaultLibrary))
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, DefaultLibrary)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func missing(path string, reason error) error {
	where := path
	if where == "" {
		where = DefaultLibrary + " (not found in the working directory or its parents)"
	}
	return fmt.Errorf("%w: %s: %v; run `make onnxruntime` or set %s (config onnxruntime.library) to libonnxruntime.so",
		ErrRuntimeMissing, where, reason, EnvLibrary)
}

// initRuntime loads the library and creates the process's ONNX Runtime
// environment, once. A failed attempt is not remembered, so installing the
// library and registering again works without a restart. Once loaded, the
// runtime is shared by every model; a different path given later must still
// exist but the loaded library is kept.
func initRuntime(configured string) error {
	path := LibraryPath(configured)
	if path == "" {
		return missing("", errors.New("no library configured"))
	}
	if _, err := os.Stat(path); err != nil {
		return missing(path, err)
	}
	runtime.mu.Lock()
	defer runtime.mu.Unlock()
	if runtime.path != "" {
		return nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return missing(path, err)
	}
	runtime.path = path
	return nil
}

// RuntimeVersion is the loaded ONNX Runtime's version, or "" before the
// first successful Load.
func RuntimeVersion() string {
	runtime.mu.Lock()
	defer runtime.mu.Unlock()
	if runtime.path == "" {
		return ""
	}
	return ort.GetVersion()
}
