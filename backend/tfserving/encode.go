package tfserving

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/modelgate/modelgate/backend"
	"github.com/modelgate/modelgate/featurizer"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// The field numbers the encoder writes, besides the decoder's.
const (
	requestInputs protowire.Number = 2  // PredictRequest.inputs, map<string, TensorProto>
	tensorBoolVal protowire.Number = 11 // TensorProto.bool_val
)

// predictRequest is the request of a Predict call: the input tensors, which
// the codec encodes after the model's own fields.
type predictRequest struct {
	inputs []featurizer.Tensor
	// batch, when not nil, is the inputs of several requests (batch[0] is
	// inputs), which stack: they have the same names, dtypes and shapes,
	// and a leading dimension of 1. Each input is then encoded as one
	// tensor of leading dimension len(batch) holding the requests' values
	// in order, as if their tensors had been concatenated.
	batch [][]featurizer.Tensor
}

// rows is the number of requests stacked in r.
func (r *predictRequest) rows() int { return max(1, len(r.batch)) }

// part returns input i of the row-th request stacked in r.
func (r *predictRequest) part(row, i int) *featurizer.Tensor {
	if r.batch == nil {
		return &r.inputs[i]
	}
	return &r.batch[row][i]
}

// values is the number of values of input i, over all the requests.
func (r *predictRequest) values(i int) int {
	n := 0
	for row := range r.rows() {
		n += r.part(row, i).Len()
	}
	return n
}

// dim is the size of dimension j of input i as encoded: the requests'
// leading dimensions add up.
func (r *predictRequest) dim(i, j int) int64 {
	d := r.inputs[i].Shape[j]
	if j == 0 {
		d *= int64(r.rows())
	}
	return d
}

// request checks the request's input tensors, as they are encoded: each
// numeric tensor in tensor_content, the elements' little-endian bytes; each
// string tensor in string_val; each bool tensor in bool_val.
func (m *Model) request(req *backend.Request) (*predictRequest, error) {
	for i := range req.Inputs {
		switch t := &req.Inputs[i]; t.DType {
		case featurizer.Float32, featurizer.Float64, featurizer.Int32, featurizer.Int64, featurizer.String, featurizer.Bool:
		default:
			return nil, badInput("input %q has invalid dtype %s", t.Name, t.DType)
		}
	}
	for i := range req.Inputs {
		t := &req.Inputs[i]
		size := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return nil, badInput("input %q has shape %v", t.Name, t.Shape)
			}
			size *= d
		}
		if size != int64(t.Len()) {
			return nil, badInput("input %q has shape %v but %d values", t.Name, t.Shape, t.Len())
		}
	}
	return &predictRequest{inputs: req.Inputs}, nil
}

// batchRequest checks the requests' inputs as request does, and stacks
// them into one request; ErrNotStackable when backend.CheckStack finds
// they do not stack: when an input's name, dtype or shape beyond the
// leading dimension differ between requests, a leading dimension is not 1,
// or there are several requests and no inputs.
func (m *Model) batchRequest(reqs []*backend.Request) (*predictRequest, error) {
	r := &predictRequest{batch: make([][]featurizer.Tensor, len(reqs))}
	for row, req := range reqs {
		p, err := m.request(req)
		if err != nil {
			return nil, err
		}
		r.batch[row] = p.inputs
	}
	r.inputs = r.batch[0]
	if err := backend.CheckStack(reqs); err != nil {
		return nil, fmt.Errorf("tfserving: %w", err)
	}
	return r, nil
}

// requestEncoder writes a model's PredictRequests in protobuf's wire format
// straight from the input tensors, as proto.Marshal would write the
// apis.PredictRequest: the model spec and the output filter, the same in
// every request, are encoded once, and each request's inputs are appended
// to them, in their order, into a buffer gRPC gives back when it has sent
// the message. It is safe for concurrent use.
type requestEncoder struct {
	head []byte // the model_spec field
	tail []byte // the output_filter fields
	err  error  // why head or tail cannot be encoded, the error of every request
	bufs bufferPool
}

// newRequestEncoder returns the encoder of requests for the model spec and
// output filter.
func newRequestEncoder(spec *apis.ModelSpec, filter []string) *requestEncoder {
	e := &requestEncoder{}
	var err error
	e.head, err = proto.Marshal(&apis.PredictRequest{ModelSpec: spec})
	if err == nil {
		e.tail, err = proto.Marshal(&apis.PredictRequest{OutputFilter: filter})
	}
	if err != nil {
		e.err = fmt.Errorf("tfserving: encoding the model spec and output filter: %w", err)
	}
	return e
}

// marshal encodes r into a buffer of e's pool. As proto.Marshal does, it
// refuses an input name that is not valid UTF-8.
func (e *requestEncoder) marshal(r *predictRequest) (mem.BufferSlice, error) {
	if e.err != nil {
		return nil, e.err
	}
	size := len(e.head) + len(e.tail)
	for i := range r.inputs {
		t := &r.inputs[i]
		if !utf8.ValidString(t.Name) {
			return nil, fmt.Errorf("tfserving: input name %q is not valid UTF-8", t.Name)
		}
		size += protowire.SizeTag(requestInputs) + protowire.SizeBytes(entryLen(r, i))
	}
	buf := e.bufs.Get(size)
	b := e.append((*buf)[:0], r)
	if len(b) != size {
		e.bufs.Put(buf)
		return nil, fmt.Errorf("tfserving: encoded a PredictRequest of %d bytes, sized %d", len(b), size)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, &e.bufs)}, nil
}

// append appends the request r to b.
func (e *requestEncoder) append(b []byte, r *predictRequest) []byte {
	b = append(b, e.head...)
	for i := range r.inputs {
		b = protowire.AppendTag(b, requestInputs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entryLen(r, i)))
		b = protowire.AppendTag(b, mapKey, protowire.BytesType)
		b = protowire.AppendString(b, r.inputs[i].Name)
		b = protowire.AppendTag(b, mapValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(tensorLen(r, i)))
		b = appendTensor(b, r, i)
	}
	return append(b, e.tail...)
}

// entryLen is the length of input i's inputs map entry.
func entryLen(r *predictRequest, i int) int {
	return protowire.SizeTag(mapKey) + protowire.SizeBytes(len(r.inputs[i].Name)) +
		protowire.SizeTag(mapValue) + protowire.SizeBytes(tensorLen(r, i))
}

// tensorLen is the length of input i's TensorProto.
func tensorLen(r *predictRequest, i int) int {
	t := &r.inputs[i]
	n := protowire.SizeTag(tensorShape) + protowire.SizeBytes(shapeLen(r, i))
	if dt := dataType(t.DType); dt != 0 {
		n += protowire.SizeTag(tensorDType) + protowire.SizeVarint(uint64(dt))
	}
	switch t.DType {
	case featurizer.Float32, featurizer.Int32:
		n += contentLen(4 * r.values(i))
	case featurizer.Float64, featurizer.Int64:
		n += contentLen(8 * r.values(i))
	case featurizer.String:
		for row := range r.rows() {
			for _, s := range r.part(row, i).String {
				n += protowire.SizeTag(tensorStringVal) + protowire.SizeBytes(len(s))
			}
		}
	case featurizer.Bool:
		if v := r.values(i); v > 0 {
			n += protowire.SizeTag(tensorBoolVal) + protowire.SizeBytes(v)
		}
	}
	return n
}

// contentLen is the length of a tensor_content field of size bytes,
// absent when empty.
func contentLen(size int) int {
	if size == 0 {
		return 0
	}
	return protowire.SizeTag(tensorContent) + protowire.SizeBytes(size)
}

// shapeLen is the length of input i's TensorShapeProto.
func shapeLen(r *predictRequest, i int) int {
	n := 0
	for j := range r.inputs[i].Shape {
		n += protowire.SizeTag(shapeDim) + protowire.SizeBytes(dimLen(r.dim(i, j)))
	}
	return n
}

// dimLen is the length of a Dim of size d: empty when d is 0.
func dimLen(d int64) int {
	if d == 0 {
		return 0
	}
	return protowire.SizeTag(dimSize) + protowire.SizeVarint(uint64(d))
}

// appendTensor appends input i's TensorProto, of tensorLen(r, i) bytes, to
// b: the values of every request stacked in r, in order.
func appendTensor(b []byte, r *predictRequest, i int) []byte {
	t := &r.inputs[i]
	if dt := dataType(t.DType); dt != 0 {
		b = protowire.AppendTag(b, tensorDType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(dt))
	}
	b = protowire.AppendTag(b, tensorShape, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(shapeLen(r, i)))
	for j := range t.Shape {
		d := r.dim(i, j)
		b = protowire.AppendTag(b, shapeDim, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(dimLen(d)))
		if d != 0 {
			b = protowire.AppendTag(b, dimSize, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(d))
		}
	}
	switch t.DType {
	case featurizer.Float32, featurizer.Int32:
		b = appendContentTag(b, 4*r.values(i))
	case featurizer.Float64, featurizer.Int64:
		b = appendContentTag(b, 8*r.values(i))
	case featurizer.Bool:
		if v := r.values(i); v > 0 {
			b = protowire.AppendTag(b, tensorBoolVal, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	for row := range r.rows() {
		b = appendValues(b, r.part(row, i))
	}
	return b
}

// appendValues appends t's values, after the tag and length appendTensor
// wrote for the packed fields: the elements' little-endian bytes, the
// string_val fields, or the bools.
func appendValues(b []byte, t *featurizer.Tensor) []byte {
	switch t.DType {
	case featurizer.Float32:
		for _, v := range t.Float32 {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	case featurizer.Float64:
		for _, v := range t.Float64 {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
	case featurizer.Int32:
		for _, v := range t.Int32 {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
	case featurizer.Int64:
		for _, v := range t.Int64 {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	case featurizer.String:
		for _, s := range t.String {
			b = protowire.AppendTag(b, tensorStringVal, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	case featurizer.Bool:
		for _, v := range t.Bool {
			b = append(b, byte(protowire.EncodeBool(v)))
		}
	}
	return b
}

// appendContentTag appends the tag and length of a tensor_content field of
// size bytes, nothing when size is 0: the field is then absent.
func appendContentTag(b []byte, size int) []byte {
	if size == 0 {
		return b
	}
	b = protowire.AppendTag(b, tensorContent, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(size))
}

// Sizes of the request buffers: gRPC gives a buffer of at most 1 KiB to no
// pool (mem.NewBuffer), so none is smaller than minRequestBuffer; a buffer
// larger than maxPooledBuffer, for an unusually long request, is left to
// the garbage collector.
const (
	minRequestBuffer = 4 << 10
	maxPooledBuffer  = 64 << 10
)

// bufferPool is the mem.BufferPool of a model's request buffers: gRPC puts
// a buffer back when it has released its last reference to the message,
// after writing it (and after any retry).
type bufferPool struct {
	pool sync.Pool // of *[]byte
}

// Get returns a buffer of length n.
func (p *bufferPool) Get(n int) *[]byte {
	if b, _ := p.pool.Get().(*[]byte); b != nil && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	c := n // not to be pooled
	switch {
	case n <= minRequestBuffer:
		c = minRequestBuffer
	case n <= maxPooledBuffer:
		c = 1 << bits.Len(uint(n-1)) // sizes that pool well
	}
	b := make([]byte, n, c)
	return &b
}

// Put takes a buffer back, unless it is larger than maxPooledBuffer.
func (p *bufferPool) Put(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	p.pool.Put(b)
}
