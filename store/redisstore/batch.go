package redisstore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/modelgate/modelgate/counters"
	"github.com/modelgate/modelgate/store"
)

// keyOp is a store.FeedbackOp in Redis's layout, one dedupe key per fact
// (store.FeedbackOp.Keys): the form the script takes and the write-ahead
// log keeps.
type keyOp struct {
	EventKey, SuccessKey, TrialKey, ItemsKey, RewardKey string
	Item                                                string
	MaxItems                                            int
	// Reward is a reward event's units (store.FeedbackOp.Reward).
	Reward       uint64
	Counter      counters.Key
	Expires, Now time.Time
}

// outageKey names op's event in Store.outage: like its dedupe key in
// Redis, it is of the op's endpoint.
func (op keyOp) outageKey() string { return op.Counter.Endpoint + "\x00" + op.EventKey }

func toKeyOps(ops []store.FeedbackOp) []keyOp {
	out := make([]keyOp, len(ops))
	for i, op := range ops {
		k := op.Keys()
		out[i] = keyOp{EventKey: k.Event, SuccessKey: k.Success, TrialKey: k.Trial, ItemsKey: k.Items, RewardKey: k.Reward,
			Item: op.Item, MaxItems: op.MaxItems, Reward: op.Reward, Counter: op.Counter, Expires: op.Expires, Now: op.Now}
	}
	return out
}

// batch is one write: AddTrials's deltas, or ApplyFeedback's ops with its
// pending trial deltas. Its id makes applying it in Redis idempotent.
type batch struct {
	id       [16]byte
	created  time.Time
	feedback bool
	deltas   map[counters.Key]uint64
	ops      []keyOp
	// prov holds, per op, the answer given while Redis could not be asked:
	// provNew or provDup. Nil for a batch that was never provisional.
	prov []byte
}

const (
	provNew = 'n'
	provDup = 'd'
)

func newBatch(feedback bool, deltas map[counters.Key]uint64, ops []keyOp, now time.Time) *batch {
	b := &batch{created: now, feedback: feedback, deltas: deltas, ops: ops}
	_, _ = rand.Read(b.id[:]) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

func (b *batch) idHex() string { return hex.EncodeToString(b.id[:]) }

// part is the share of a batch that touches one endpoint's keys: its
// pending trial deltas and its ops, with the ops' positions in the batch.
// Each part is applied by one script run, recorded under the batch's id in
// the endpoint's keys, so each is idempotent on its own and a batch that
// was applied in part is finished by its replay.
type part struct {
	endpoint string
	deltas   map[counters.Key]uint64
	ops      []keyOp
	at       []int
}

// parts splits b by endpoint, in endpoint order.
func (b *batch) parts() []*part {
	m := map[string]*part{}
	get := func(e string) *part {
		p := m[e]
		if p == nil {
			p = &part{endpoint: e}
			m[e] = p
		}
		return p
	}
	for k, n := range b.deltas {
		p := get(k.Endpoint)
		if p.deltas == nil {
			p.deltas = map[counters.Key]uint64{}
		}
		p.deltas[k] = n
	}
	for i, op := range b.ops {
		p := get(op.Counter.Endpoint)
		p.ops = append(p.ops, op)
		p.at = append(p.at, i)
	}
	out := make([]*part, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].endpoint < out[j].endpoint })
	return out
}

// Payload layout, version 3 (integers are Go varints, strings a uvarint
// length then bytes; version 1 had no items key, item and max items,
// version 2 no reward key and reward):
//
//	version   byte 1
//	kind      byte 'T' (AddTrials) or 'F' (ApplyFeedback)
//	id        16 bytes
//	created   varint, Unix nanoseconds
//	ndeltas   uvarint, then per delta: endpoint, segment, arm (strings), count (uvarint)
//	nops      uvarint, then per op: event, trial, success keys, endpoint,
//	          segment, arm (strings), expires (varint Unix nanoseconds),
//	          items key, item (strings), max items (uvarint),
//	          reward key (string), reward units (uvarint),
//	          provisional answer (byte 'n', 'd', or 0 when none was given)
const batchVersion = 3

func encodeBatch(b *batch) []byte {
	buf := make([]byte, 0, 64+len(b.ops)*96+len(b.deltas)*48)
	buf = append(buf, batchVersion)
	if b.feedback {
		buf = append(buf, 'F')
	} else {
		buf = append(buf, 'T')
	}
	buf = append(buf, b.id[:]...)
	buf = binary.AppendVarint(buf, b.created.UnixNano())
	keys := sortedKeys(b.deltas)
	buf = binary.AppendUvarint(buf, uint64(len(keys)))
	for _, k := range keys {
		buf = appendStr(buf, k.Endpoint)
		buf = appendStr(buf, k.Segment)
		buf = appendStr(buf, k.Arm)
		buf = binary.AppendUvarint(buf, b.deltas[k])
	}
	buf = binary.AppendUvarint(buf, uint64(len(b.ops)))
	for i, op := range b.ops {
		buf = appendStr(buf, op.EventKey)
		buf = appendStr(buf, op.TrialKey)
		buf = appendStr(buf, op.SuccessKey)
		buf = appendStr(buf, op.Counter.Endpoint)
		buf = appendStr(buf, op.Counter.Segment)
		buf = appendStr(buf, op.Counter.Arm)
		buf = binary.AppendVarint(buf, op.Expires.UnixNano())
		buf = appendStr(buf, op.ItemsKey)
		buf = appendStr(buf, op.Item)
		buf = binary.AppendUvarint(buf, uint64(max(op.MaxItems, 0)))
		buf = appendStr(buf, op.RewardKey)
		buf = binary.AppendUvarint(buf, op.Reward)
		var p byte
		if b.prov != nil {
			p = b.prov[i]
		}
		buf = append(buf, p)
	}
	return buf
}

func sortedKeys(m map[counters.Key]uint64) []counters.Key {
	keys := make([]counters.Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Endpoint != b.Endpoint {
			return a.Endpoint < b.Endpoint
		}
		if a.Segment != b.Segment {
			return a.Segment < b.Segment
		}
		return a.Arm < b.Arm
	})
	return keys
}

func appendStr(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

var errBadBatch = errors.New("malformed batch record")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errBadBatch
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadBatch
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadBatch
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errBadBatch
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads an element count, refusing one the rest of the payload cannot
// hold (each element takes at least minSize bytes), so a corrupt count never
// allocates much.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)/minSize) {
		d.err = errBadBatch
		return 0
	}
	return int(n)
}

func decodeBatch(p []byte) (*batch, error) {
	d := &decoder{b: p}
	v := d.byte1()
	if v < 1 || v > batchVersion {
		return nil, fmt.Errorf("batch record version %d, want 1 to %d", v, batchVersion)
	}
	b := &batch{}
	switch d.byte1() {
	case 'T':
	case 'F':
		b.feedback = true
	default:
		return nil, errBadBatch
	}
	if len(d.b) < len(b.id) {
		return nil, errBadBatch
	}
	copy(b.id[:], d.b)
	d.b = d.b[len(b.id):]
	b.created = time.Unix(0, d.varint())
	if n := d.count(4); n > 0 {
		b.deltas = make(map[counters.Key]uint64, n)
		for range n {
			k := counters.Key{Endpoint: d.str(), Segment: d.str(), Arm: d.str()}
			b.deltas[k] += d.uvarint()
		}
	}
	if n := d.count(8); n > 0 {
		b.ops = make([]keyOp, n)
		b.prov = make([]byte, n)
		given := false
		for i := range b.ops {
			op := &b.ops[i]
			op.EventKey, op.TrialKey, op.SuccessKey = d.str(), d.str(), d.str()
			op.Counter = counters.Key{Endpoint: d.str(), Segment: d.str(), Arm: d.str()}
			op.Expires = time.Unix(0, d.varint())
			if v >= 2 {
				op.ItemsKey, op.Item = d.str(), d.str()
				op.MaxItems = int(min(d.uvarint(), math.MaxInt32))
			}
			if v >= 3 {
				op.RewardKey = d.str()
				op.Reward = min(d.uvarint(), counters.RewardUnit)
			}
			b.prov[i] = d.byte1()
			given = given || b.prov[i] != 0
		}
		if !given {
			b.prov = nil
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errBadBatch
	}
	if d.err != nil {
		return nil, d.err
	}
	return b, nil
}
