//go:build race

package sim

// raceEnabled is true under `go test -race`, where the simulator runs about
// ten times slower: the statistical tests then use fewer runs and
// correspondingly wider tolerances.
const raceEnabled = true
