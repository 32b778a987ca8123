//go:build !linux

package main

import "os/exec"

// setParentDeathSignal does nothing here: the children end when their
// stdin closes.
func setParentDeathSignal(*exec.Cmd) {}
