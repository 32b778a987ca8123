package feedback

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
		Propensity: 0.75, Window: 36 * time.Hour, OnImpression: true, ID: NewID()}
	tok := s.Sign(&in)
	out, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if out.Endpoint != in.Endpoint || out.Arm != in.Arm || out.Segment != in.Segment || !out.Time.Equal(in.Time) ||
		out.ID != in.ID || out.Propensity != 0.75 || out.Window != in.Window || !out.OnImpression {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
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
			if _, err := s.Verify(tok); err != ErrInvalidToken {
				t.Fatalf("Verify(%q) = %v, want ErrInvalidToken", tok, err)
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
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		out, err := s.Verify(tok)
		if err == nil {
			// Anything that verifies must re-sign to a token that verifies the same.
			again, err := s.Verify(s.Sign(out))
			if err != nil || again.Endpoint != out.Endpoint || again.Arm != out.Arm || again.Segment != out.Segment {
				t.Fatalf("re-signed token differs: %+v vs %+v (%v)", again, out, err)
			}
		}
	})
}
