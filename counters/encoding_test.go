package counters

import (
	"encoding/hex"
	"testing"
	"time"
)

// The encodings are the data dir's and Redis's format: the golden values
// must never change (store/testdata holds data written with them).
func TestKeyEncoding(t *testing.T) {
	tests := []struct {
		key  Key
		want string
	}{
		{Key{Endpoint: "home", Segment: "all", Arm: "mf@1"}, "home\x00mf@1\x00all"},
		{Key{Endpoint: "home", Segment: "surface=mu\x00sic", Arm: "mf@2"}, "home\x00mf@2\x00surface=mu\x00sic"},
		{Key{Endpoint: "e", Segment: "", Arm: "a"}, "e\x00a\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.key.Encode(); got != tc.want {
				t.Fatalf("Encode = %q, want %q", got, tc.want)
			}
			if got, ok := DecodeKey(tc.want); !ok || got != tc.key {
				t.Fatalf("DecodeKey = %+v, %v; want %+v", got, ok, tc.key)
			}
		})
	}
	for _, bad := range []string{"", "home", "home\x00mf@1"} {
		if k, ok := DecodeKey(bad); ok {
			t.Errorf("DecodeKey(%q) = %+v, want false", bad, k)
		}
	}
}

// The golden value is the bytes store/testdata/v1/modelgate.db holds for
// this snapshot.
func TestDiscEncoding(t *testing.T) {
	d := Disc{Trials: 30.25, Successes: 1.5, At: time.Unix(0, 1796646615123456789), RawTrials: 42, RawSuccesses: 1}
	const golden = "403e400000000000" + "3ff8000000000000" + "18eef893d1577315" + "000000000000002a" + "0000000000000001"
	raw, err := d.MarshalBinary()
	if err != nil || hex.EncodeToString(raw) != golden {
		t.Fatalf("MarshalBinary = %x, %v; want %s", raw, err, golden)
	}
	var back Disc
	if err := back.UnmarshalBinary(raw); err != nil || back.Trials != d.Trials || back.Successes != d.Successes ||
		!back.At.Equal(d.At) || back.RawTrials != d.RawTrials || back.RawSuccesses != d.RawSuccesses {
		t.Fatalf("round trip = %+v, %v; want %+v", back, err, d)
	}
	for _, n := range []int{0, 39, 41} {
		if err := back.UnmarshalBinary(make([]byte, n)); err == nil {
			t.Errorf("UnmarshalBinary of %d bytes succeeded", n)
		}
	}
}
