package predtoken

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestTokenRoundTrip(t *testing.T) {
	s, err := NewSigner(key(1))
	if err != nil {
		t.Fatal(err)
	}
	in := Token{Endpoint: "home", Arm: "mf@2", Segment: "surface=music,country=de", Time: time.UnixMilli(1764000000123),
		Propensity: 0.75, Window: 36 * time.Hour, OnImpression: true, Items: 1000, ID: NewID()}
	tok := s.Sign(&in)
	out, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if out.Endpoint != in.Endpoint || out.Arm != in.Arm || out.Segment != in.Segment || !out.Time.Equal(in.Time) ||
		out.ID != in.ID || out.Propensity != 0.75 || out.Window != in.Window || !out.OnImpression || out.Items != 1000 {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	if out.Pinned {
		t.Fatal("an unpinned token verified as pinned")
	}
	// The signer's and the verifier's tokens name the same prediction and
	// window end, whatever precision the signer's time had.
	in.Time = in.Time.Add(456789 * time.Nanosecond)
	if out.Key() != in.Key() || !out.Expires().Equal(in.Expires()) || !out.Expires().Equal(out.Time.Add(out.Window)) {
		t.Fatalf("key or expiry differ: %v vs %v", out.Expires(), in.Expires())
	}
	in.Pinned, in.OnImpression = true, false
	if out, err := s.Verify(s.Sign(&in)); err != nil || !out.Pinned || out.OnImpression || out.Shadowed {
		t.Fatalf("a pinned token: %+v, %v", out, err)
	}
	in.Pinned, in.Shadowed = false, true
	if out, err := s.Verify(s.Sign(&in)); err != nil || !out.Shadowed || out.Pinned {
		t.Fatalf("a shadowed token: %+v, %v", out, err)
	}
}

func TestTokenItems(t *testing.T) {
	s, _ := NewSigner(key(1))
	tests := []struct {
		items, want, limit int
	}{
		{items: 0, want: 0, limit: 1},
		{items: 1, want: 1, limit: 1},
		{items: 10, want: 10, limit: 10},
		{items: -3, want: 0, limit: 1},
		{items: 1 << 20, want: MaxItems, limit: MaxItems},
	}
	for _, tc := range tests {
		out, err := s.Verify(s.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), Items: tc.items, ID: NewID()}))
		if err != nil || out.Items != tc.want || out.ItemLimit() != tc.limit {
			t.Errorf("Items %d: verified %+v, %v; want Items %d, ItemLimit %d", tc.items, out, err, tc.want, tc.limit)
		}
	}
}

// v3Token was signed with key(1) by the token format before the item count
// (version 3): endpoint home, arm mf@1, segment surface=music, served at
// Unix ms 1764000000123, propensity 0.5, window 24h, id "abcdefghijkl".
const v3Token = "A3LNboQAAAGatpfoe2FiY2RlZmdoaWprbD8AAAAAAVGAAARob21lBG1mQDENc3VyZmFjZT1tdXNpY6RtIlPbY9GsfwPqC2z_mo0"

func TestVersion3TokenStillVerifies(t *testing.T) {
	s, _ := NewSigner(key(1))
	out, err := s.Verify(v3Token)
	if err != nil {
		t.Fatal(err)
	}
	if out.Endpoint != "home" || out.Arm != "mf@1" || out.Segment != "surface=music" || out.Time.UnixMilli() != 1764000000123 ||
		out.Propensity != 0.5 || out.Window != 24*time.Hour || out.OnImpression || out.Shadowed || string(out.ID[:]) != "abcdefghijkl" {
		t.Fatalf("v3 token decoded as %+v", out)
	}
	if out.Items != LegacyItems {
		t.Fatalf("v3 token: Items = %d, want LegacyItems (%d)", out.Items, LegacyItems)
	}
	if again, err := s.Verify(s.Sign(out)); err != nil || again.Items != LegacyItems {
		t.Fatalf("v3 token re-signed: %+v, %v", again, err)
	}
}

func TestTokenRejects(t *testing.T) {
	s, _ := NewSigner(key(1))
	good := s.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), ID: NewID()})
	other, _ := NewSigner(key(2))
	foreign := other.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), ID: NewID()})
	flip := []byte(good)
	if flip[10] == 'A' {
		flip[10] = 'B'
	} else {
		flip[10] = 'A'
	}
	for name, tok := range map[string]string{
		"empty":      "",
		"not base64": "!!!!",
		"short":      good[:20],
		"tampered":   string(flip),
		"truncated":  good[:len(good)-1],
		"foreign":    foreign,
		"huge":       strings.Repeat("A", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Verify(tok); err != ErrInvalid {
				t.Fatalf("Verify(%q) = %v, want ErrInvalid", tok, err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	old, _ := NewSigner(key(1))
	tok := old.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), ID: NewID()})
	rotated, _ := NewSigner(key(2), key(1))
	if _, err := rotated.Verify(tok); err != nil {
		t.Fatalf("a token of the previous key must verify after rotation: %v", err)
	}
	if _, err := NewSigner(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key must be refused")
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(key(1))
	f.Add(s.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", Time: time.Now(), ID: NewID()}))
	f.Add(s.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "s=a", Time: time.Now(), Items: 7, ID: NewID()}))
	f.Add(v3Token)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		out, err := s.Verify(tok)
		if err == nil {
			// Anything that verifies must re-sign to a token that verifies the same.
			again, err := s.Verify(s.Sign(out))
			if err != nil || again.Endpoint != out.Endpoint || again.Arm != out.Arm || again.Segment != out.Segment ||
				again.Items != out.Items || again.Window != out.Window || again.OnImpression != out.OnImpression {
				t.Fatalf("re-signed token differs: %+v vs %+v (%v)", again, out, err)
			}
		}
	})
}

// BenchmarkSign is the token the router signs on every recommendation.
func BenchmarkSign(b *testing.B) {
	s, _ := NewSigner(key(1))
	t := Token{Endpoint: "home", Arm: "mf@2", Segment: "surface=music,country=de", Time: time.UnixMilli(1764000000123),
		Propensity: 0.75, Window: 36 * time.Hour, Items: 10, ID: NewID()}
	b.ReportAllocs()
	for b.Loop() {
		if s.Sign(&t) == "" {
			b.Fatal("empty token")
		}
	}
}

// BenchmarkVerify is feedback checking a token.
func BenchmarkVerify(b *testing.B) {
	s, _ := NewSigner(key(1))
	tok := s.Sign(&Token{Endpoint: "home", Arm: "mf@2", Segment: "surface=music,country=de", Time: time.UnixMilli(1764000000123),
		Propensity: 0.75, Window: 36 * time.Hour, Items: 10, ID: NewID()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// The wire format is fixed: tokens already issued must keep verifying, and
// signing the same token twice, or from reused signing state, gives the
// same bytes.
func TestSignKnownAnswer(t *testing.T) {
	s, _ := NewSigner(key(1), key(2))
	tests := []struct {
		in   Token
		want string
	}{
		{Token{Endpoint: "home", Arm: "mf@2", Segment: "surface=music,country=de", Time: time.UnixMilli(1764000000123),
			Propensity: 0.75, Window: 36 * time.Hour, OnImpression: true, Items: 1000, ID: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
			"BHLNboQAAAGatpfoewECAwQFBgcICQoLDD9AAAAAAfpAAQPoBGhvbWUEbWZAMhhzdXJmYWNlPW11c2ljLGNvdW50cnk9ZGVcdauuh1miM8ozSwHI6qXu"},
		{Token{Endpoint: "e", Arm: "a", Time: time.UnixMilli(0)},
			"BHLNboQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAWUBYQCU72g18qVjVlNOMKPMK2w1"},
	}
	for round := 0; round < 3; round++ {
		for _, tc := range tests {
			if got := s.Sign(&tc.in); got != tc.want {
				t.Fatalf("round %d: Sign(%+v) = %q, want %q", round, tc.in, got, tc.want)
			}
			if _, err := s.Verify(tc.want); err != nil {
				t.Fatalf("Verify(%q): %v", tc.want, err)
			}
		}
	}
	// A token longer than the pooled scratch limit signs and verifies too.
	long := Token{Endpoint: strings.Repeat("e", 2*maxScratch), Arm: "a", Time: time.UnixMilli(1)}
	if out, err := s.Verify(s.Sign(&long)); err != nil || out.Endpoint != long.Endpoint {
		t.Fatalf("long token: %v", err)
	}
}

// A token carries a linear-thompson context vector compactly and exactly
// (at float32 precision); a token without one, as every earlier token, has
// none; a tampered vector is rejected with the signature.
func TestTokenContextVector(t *testing.T) {
	s, _ := NewSigner(key(1))
	x := make([]float64, 64)
	x[0], x[5], x[40], x[63] = 1, 1, float64(float32(-0.4375)), 2.5
	tests := []struct {
		name string
		x    []float64
		max  int // the most bytes the vector may add
	}{
		{"one-hot, d = 16", []float64{1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 12},
		{"numbers, d = 64", x, 36},
		{"d = 1", []float64{1}, 8},
	}
	base := len(s.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", ID: NewID()}))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := Token{Endpoint: "home", Arm: "mf@1", Segment: "all", ID: NewID(), X: tc.x, Layout: 0xfeedbeef}
			tok := s.Sign(&in)
			if grew := (len(tok) - base) * 3 / 4; grew > tc.max {
				t.Errorf("the vector added %d bytes, want ≤ %d", grew, tc.max)
			}
			out, err := s.Verify(tok)
			if err != nil || out.Layout != in.Layout || len(out.X) != len(tc.x) {
				t.Fatalf("verified %+v, %v", out, err)
			}
			for i := range tc.x {
				if out.X[i] != tc.x[i] {
					t.Fatalf("x[%d] = %v, want %v", i, out.X[i], tc.x[i])
				}
			}
		})
	}
	out, err := s.Verify(s.Sign(&Token{Endpoint: "home", Arm: "mf@1", Segment: "all", ID: NewID()}))
	if err != nil || out.X != nil {
		t.Fatalf("no vector: %+v, %v", out, err)
	}
	if out, err := s.Verify(v3Token); err != nil || out.X != nil {
		t.Fatalf("a version 3 token: %+v, %v", out, err)
	}
}
