// Package predtoken is the signed prediction token: the prediction id the
// router issues with every recommendation and feedback verifies. It holds the
// token's fields, its wire format (every version still accepted), signing,
// verification and key rotation.
package predtoken

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"math"
	"strconv"
	"sync"
	"time"
)

// Token is what a prediction id carries. ID is a random 12-byte value that,
// with Time, makes the prediction unique; the dedupe keys are derived from it.
type Token struct {
	Endpoint   string
	Arm        string
	Segment    string
	Time       time.Time // when the prediction was served, millisecond precision
	Propensity float64   // probability the policy gave the serving arm
	// Window is the attribution window in force when the prediction was
	// served, and OnImpression whether trials were counted on impressions
	// then: feedback follows the rules the prediction was served under, even
	// if the endpoint's policy has changed since.
	Window       time.Duration
	OnImpression bool
	// Pinned marks a prediction served by an arm a QA caller pinned: it
	// counts nowhere, and its feedback is accepted and ignored.
	Pinned bool
	// Shadowed marks a prediction that the endpoint's shadows were asked
	// to score too: feedback looks up their lists for its first click.
	// Tokens signed before the flag existed read as not shadowed.
	Shadowed bool
	// Items is how many items the prediction returned: feedback accepts
	// events for at most max(Items, 1) distinct item ids of it (see
	// ItemLimit). Sign stores at most MaxItems.
	Items int
	ID    [12]byte
	// X is the request's context vector under a linear-thompson policy
	// (at most MaxDims values, each carried as a float32), nil for other
	// policies; Layout names the vector's layout. Feedback adds a click's
	// reward to the arm's sums with it, on whichever replica the click
	// reaches.
	X      []float64
	Layout uint32
}

// MaxDims is the longest context vector a token carries.
const MaxDims = 64

// LegacyItems is the Items of a token signed before tokens carried the
// count (version 3): the largest k (topk.Max) while that format was
// signed, the most items any such prediction can have returned. A fact of
// the old tokens, it does not follow later changes of topk.Max.
const LegacyItems = 1000

// MaxItems is the largest Items a token carries.
const MaxItems = math.MaxUint16

// ItemLimit is how many distinct non-empty item ids feedback accepts for
// the prediction: as many as it returned, and at least one, so a client
// may still name an item it showed next to an empty list.
func (t *Token) ItemLimit() int { return max(t.Items, 1) }

const (
	tokenVersion = 4
	// v3Version tokens (without the item count) are still verified.
	v3Version = 3
	sigLen    = 16 // truncated HMAC-SHA256: 128 bits
	// maxTokenLen bounds what Verify decodes; the router's limits on
	// names and context values keep every token it signs far below it.
	maxTokenLen    = 16384
	flagImpression = 1
	flagPinned     = 2
	flagShadowed   = 4
	// flagContext: the token ends with a context vector (appendContext).
	flagContext = 8
)

// headerLen is the fixed part of a token: version, key id, time, id,
// propensity, window, flags, items; v3HeaderLen the same without items.
const (
	v3HeaderLen = 1 + 4 + 8 + 12 + 4 + 4 + 1
	headerLen   = v3HeaderLen + 2
)

// ErrInvalid is returned for anything that is not a token signed by one
// of the signer's keys.
var ErrInvalid = errors.New("invalid prediction id")

// Signer signs tokens with its first key and verifies with all of them, so a
// key can be rotated without rejecting feedback on earlier tokens. Its keys
// are fixed at construction; it is safe for concurrent use and must not be
// copied.
type Signer struct {
	keys [][]byte
	ids  [][4]byte // key ids: the first 4 bytes of each key's SHA-256
	// macs[i] holds keyed HMAC-SHA256 states for keys[i], reused across
	// calls: keying a new HMAC allocates its state on every token.
	macs []sync.Pool
}

// keyedMAC is one reusable HMAC state with scratch space for signing.
type keyedMAC struct {
	h   hash.Hash
	sum [sha256.Size]byte
	raw []byte // the token being signed
	enc []byte // its base64 encoding
}

// maxScratch is the largest scratch buffer a pooled state keeps; a larger
// one (a token with very long names) is left to the garbage collector.
const maxScratch = 1024

// NewSigner returns a signer; keys[0] signs. Each key must be ≥ 32 bytes.
func NewSigner(keys ...[]byte) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no signing key")
	}
	for i, k := range keys {
		if len(k) < 32 {
			return nil, errors.New("signing key " + strconv.Itoa(i) + " is shorter than 32 bytes")
		}
	}
	s := &Signer{keys: keys, macs: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		sum := sha256.Sum256(k)
		s.ids = append(s.ids, [4]byte(sum[:4]))
		s.macs[i].New = func() any { return &keyedMAC{h: hmac.New(sha256.New, k)} }
	}
	return s, nil
}

// Key names the prediction in the store: its random id and its time in
// Unix milliseconds, 20 bytes. Feedback keeps the prediction's dedupe state
// under it, and the shadows' lists are kept under it.
func (t *Token) Key() string {
	var b [20]byte
	copy(b[:12], t.ID[:])
	binary.BigEndian.PutUint64(b[12:], uint64(t.Time.UnixMilli()))
	return string(b[:])
}

// Expires is the end of the prediction's attribution window, as its signed
// token says it (time to the millisecond, window to the second): the same
// for the token the router signs and the one feedback verifies.
func (t *Token) Expires() time.Time {
	return time.UnixMilli(t.Time.UnixMilli()).Add(t.Window.Truncate(time.Second))
}

// NewID returns a fresh random token id.
func NewID() [12]byte {
	var id [12]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms
	return id
}

// Sign encodes and signs t as a URL-safe string.
func (s *Signer) Sign(t *Token) string {
	m := s.macs[0].Get().(*keyedMAC)
	defer s.put(0, m)
	buf := m.raw[:0]
	buf = append(buf, tokenVersion)
	buf = append(buf, s.ids[0][:]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(t.Time.UnixMilli()))
	buf = append(buf, t.ID[:]...)
	buf = binary.BigEndian.AppendUint32(buf, math.Float32bits(float32(t.Propensity)))
	buf = binary.BigEndian.AppendUint32(buf, uint32(t.Window/time.Second))
	var flags byte
	if t.OnImpression {
		flags |= flagImpression
	}
	if t.Pinned {
		flags |= flagPinned
	}
	if t.Shadowed {
		flags |= flagShadowed
	}
	if len(t.X) > 0 && len(t.X) <= MaxDims {
		flags |= flagContext
	}
	buf = append(buf, flags)
	buf = binary.BigEndian.AppendUint16(buf, uint16(min(max(t.Items, 0), MaxItems)))
	for _, f := range [...]string{t.Endpoint, t.Arm, t.Segment} {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	if flags&flagContext != 0 {
		buf = appendContext(buf, t.Layout, t.X)
	}
	buf = append(buf, m.mac(buf)...)
	m.raw = buf
	m.enc = base64.RawURLEncoding.AppendEncode(m.enc[:0], buf)
	return string(m.enc)
}

// put returns m to the pool of key i, without scratch buffers grown past
// maxScratch.
func (s *Signer) put(i int, m *keyedMAC) {
	if cap(m.raw) > maxScratch || cap(m.enc) > maxScratch {
		m.raw, m.enc = nil, nil
	}
	s.macs[i].Put(m)
}

// mac is the truncated HMAC of msg under m's key; the result is valid until
// m's next use.
func (m *keyedMAC) mac(msg []byte) []byte {
	m.h.Reset()
	m.h.Write(msg)
	return m.h.Sum(m.sum[:0])[:sigLen]
}

// verifyMAC reports whether sig is the MAC of msg under key i.
func (s *Signer) verifyMAC(i int, msg, sig []byte) bool {
	m := s.macs[i].Get().(*keyedMAC)
	ok := hmac.Equal(m.mac(msg), sig)
	s.put(i, m)
	return ok
}

// Verify checks the signature against every key and decodes the token.
func (s *Signer) Verify(tok string) (*Token, error) {
	if len(tok) == 0 || len(tok) > maxTokenLen {
		return nil, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < v3HeaderLen+3+sigLen {
		return nil, ErrInvalid
	}
	body, sig := raw[:len(raw)-sigLen], raw[len(raw)-sigLen:]
	hlen := headerLen
	switch body[0] {
	case tokenVersion:
		if len(body) < headerLen+3 {
			return nil, ErrInvalid
		}
	case v3Version:
		hlen = v3HeaderLen
	default:
		return nil, ErrInvalid
	}
	// The key id picks the key; an unknown id (or a key id collision) is
	// still checked against every key, so the id is a hint, not a trust.
	ok := false
	for i := range s.keys {
		if s.ids[i] == [4]byte(body[1:5]) && s.verifyMAC(i, body, sig) {
			ok = true
			break
		}
	}
	if !ok {
		for i := range s.keys {
			if s.verifyMAC(i, body, sig) {
				ok = true
				break
			}
		}
	}
	if !ok {
		return nil, ErrInvalid
	}
	b := body[5:]
	t := &Token{Time: time.UnixMilli(int64(binary.BigEndian.Uint64(b[0:8])))}
	copy(t.ID[:], b[8:20])
	t.Propensity = float64(math.Float32frombits(binary.BigEndian.Uint32(b[20:24])))
	t.Window = time.Duration(binary.BigEndian.Uint32(b[24:28])) * time.Second
	t.OnImpression = b[28]&flagImpression != 0
	t.Pinned = b[28]&flagPinned != 0
	t.Shadowed = b[28]&flagShadowed != 0
	t.Items = LegacyItems
	if hlen == headerLen {
		t.Items = int(binary.BigEndian.Uint16(b[29:31]))
	}
	rest := body[hlen:]
	fields := [3]*string{&t.Endpoint, &t.Arm, &t.Segment}
	for _, f := range fields {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, ErrInvalid
		}
		*f = string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
	}
	if b[28]&flagContext != 0 {
		var ok bool
		if t.Layout, t.X, rest, ok = readContext(rest); !ok {
			return nil, ErrInvalid
		}
	}
	if len(rest) != 0 {
		return nil, ErrInvalid
	}
	return t, nil
}

// appendContext writes a context vector compactly, as one-hot vectors
// mostly are 0 or 1: the layout (4 bytes), the length (a byte), a uvarint
// mask of the non-zero dimensions, a uvarint mask of those that are not 1,
// then each of those as a float32.
func appendContext(buf []byte, layout uint32, x []float64) []byte {
	buf = binary.BigEndian.AppendUint32(buf, layout)
	buf = append(buf, byte(len(x)))
	var nz, other uint64
	for i, v := range x {
		if float32(v) != 0 {
			nz |= 1 << i
			if float32(v) != 1 {
				other |= 1 << i
			}
		}
	}
	buf = binary.AppendUvarint(buf, nz)
	buf = binary.AppendUvarint(buf, other)
	for i, v := range x {
		if other&(1<<i) != 0 {
			buf = binary.BigEndian.AppendUint32(buf, math.Float32bits(float32(v)))
		}
	}
	return buf
}

// readContext reads what appendContext wrote.
func readContext(b []byte) (layout uint32, x []float64, rest []byte, ok bool) {
	if len(b) < 5 {
		return 0, nil, nil, false
	}
	layout, d := binary.BigEndian.Uint32(b), int(b[4])
	b = b[5:]
	if d < 1 || d > MaxDims {
		return 0, nil, nil, false
	}
	nz, w := binary.Uvarint(b)
	if w <= 0 {
		return 0, nil, nil, false
	}
	b = b[w:]
	other, w := binary.Uvarint(b)
	if w <= 0 || other&^nz != 0 || (d < 64 && nz>>d != 0) {
		return 0, nil, nil, false
	}
	b = b[w:]
	x = make([]float64, d)
	for i := range x {
		switch {
		case other&(1<<i) != 0:
			if len(b) < 4 {
				return 0, nil, nil, false
			}
			x[i] = float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
			b = b[4:]
		case nz&(1<<i) != 0:
			x[i] = 1
		}
	}
	return layout, x, b, true
}
