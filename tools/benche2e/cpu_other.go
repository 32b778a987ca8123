//go:build !linux

package main

import "time"

// cpuTime is not measured off Linux.
func cpuTime(int) (time.Duration, bool) { return 0, false }
