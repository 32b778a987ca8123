package counters

import "testing"

// Pending is the flush backlog: trials counted since the last drain, plus
// any handed back after a failed write.
func TestPending(t *testing.T) {
	var tb Table
	a, b := tb.Cell(Key{"e", "all", "m@1"}), tb.Cell(Key{"e", "all", "m@2"})
	for _, step := range []struct {
		name string
		do   func()
		want uint64
	}{
		{"empty", func() {}, 0},
		{"three trials", func() { a.AddTrial(); a.AddTrial(); b.AddTrial() }, 3},
		{"durable counts are not pending", func() { a.AddDurable(5, 1, 0) }, 3},
		{"drained", func() { tb.Restore(tb.DrainPending()); tb.DrainPending() }, 0},
		{"restored after a failed flush", func() { a.AddTrial(); p := tb.DrainPending(); b.AddTrial(); tb.Restore(p) }, 2},
	} {
		step.do()
		if got := tb.Pending(); got != step.want {
			t.Fatalf("%s: Pending() = %d, want %d", step.name, got, step.want)
		}
	}
}
