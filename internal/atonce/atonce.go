// Package atonce starts several functions at the same moment, for tests
// that check concurrent changes (compare-and-swap retries) lose nothing.
package atonce

import (
	"errors"
	"sync"
)

// Run calls every fn in its own goroutine, all released together once
// every goroutine is started, so they contend as much as they can; it
// returns when all have returned, with their errors joined (nil when none
// failed). It is safe to call from several goroutines.
func Run(fns ...func() error) error {
	start := make(chan struct{})
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn()
		}()
	}
	close(start)
	wg.Wait()
	return errors.Join(errs...)
}
