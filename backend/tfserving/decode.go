package tfserving

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/modelgate/modelgate/proto/tensorflow/core/framework"
	"github.com/modelgate/modelgate/proto/tensorflow_serving/apis"
)

// The field numbers the decoder reads.
const (
	responseOutputs protowire.Number = 1 // PredictResponse.outputs, map<string, TensorProto>

	mapKey   protowire.Number = 1 // of a map entry
	mapValue protowire.Number = 2

	tensorDType     protowire.Number = 1
	tensorShape     protowire.Number = 2
	tensorContent   protowire.Number = 4
	tensorFloatVal  protowire.Number = 5
	tensorDoubleVal protowire.Number = 6
	tensorStringVal protowire.Number = 8

	shapeDim protowire.Number = 2 // TensorShapeProto.dim
	dimSize  protowire.Number = 1 // TensorShapeProto.Dim.size
)

// responseDecoder reads the scores and ids outputs straight from the wire
// bytes of a PredictResponse, without building the message: no map, no
// TensorProtos, no shapes, and only the two outputs' values copied.
//
// It accepts exactly the encodings proto.Unmarshal accepts, checking the
// parts it does not read as protobuf would (wire format, field numbers,
// UTF-8 of string fields), and reads the same values: repeated fields
// accumulate, packed or not; the last value of a singular field wins; a
// message field met twice is merged; the last entry of a map key wins.
// (protobuf's recursion limit cannot be reached: no message of the
// response nests itself, as TestDecoderKnowsTheSchema checks, and unknown
// groups are skipped by protowire as protobuf skips them.) It is immutable,
// so safe for concurrent use.
type responseDecoder struct {
	scores, ids string // the aliases of the outputs read; ids "" for none
	// The descriptors that check the parts the decoder does not read.
	response, tensor, shape, dim protoreflect.MessageDescriptor
}

// newResponseDecoder returns the decoder of the outputs scores and ids
// (none when "").
func newResponseDecoder(scores, ids string) *responseDecoder {
	return &responseDecoder{
		scores:   scores,
		ids:      ids,
		response: (&apis.PredictResponse{}).ProtoReflect().Descriptor(),
		tensor:   (&framework.TensorProto{}).ProtoReflect().Descriptor(),
		shape:    (&framework.TensorShapeProto{}).ProtoReflect().Descriptor(),
		dim:      (&framework.TensorShapeProto_Dim{}).ProtoReflect().Descriptor(),
	}
}

// errWire is wrapped by the decoder's errors: b is not a PredictResponse
// protobuf would decode.
var errWire = errors.New("malformed PredictResponse")

func wireError(in string, n int) error {
	return fmt.Errorf("%w: %s: %w", errWire, in, protowire.ParseError(n))
}

// decode reads the outputs out of b, the wire bytes of a PredictResponse.
// Nothing in out refers to b once decode returns.
func (d *responseDecoder) decode(b []byte, out *outputs) error {
	*out = outputs{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b, "PredictResponse")
		if err != nil {
			return err
		}
		b = b[n:]
		if num == responseOutputs && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return wireError("outputs", n)
			}
			if err := d.entry(v, out); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		if n, err = checkField(b, d.response.Fields().ByNumber(num), num, typ); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// entry reads one entry of the outputs map, {1: key, 2: TensorProto}. The
// key may follow the value and either may repeat (the last key wins, values
// merge), so a first pass finds the key and checks all but the values, and
// a second reads the values when the key is wanted, else checks them.
func (d *responseDecoder) entry(b []byte, out *outputs) error {
	var key []byte
	for rest := b; len(rest) > 0; {
		num, typ, n, err := consumeTag(rest, "outputs entry")
		if err != nil {
			return err
		}
		rest = rest[n:]
		switch {
		case num == mapKey && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(rest); n >= 0 && !utf8.Valid(v) {
				return fmt.Errorf("%w: an outputs key is not valid UTF-8", errWire)
			}
			key = v
		case num == mapValue && typ == protowire.BytesType:
			_, n = protowire.ConsumeBytes(rest)
		default:
			n = protowire.ConsumeFieldValue(num, typ, rest)
		}
		if n < 0 {
			return wireError("outputs entry", n)
		}
		rest = rest[n:]
	}
	var r tensorReader
	switch {
	case string(key) == d.scores:
		out.hasScores = true
		r = newTensorReader(&out.scores, b)
	case d.ids != "" && string(key) == d.ids:
		out.hasIDs = true
		r = newTensorReader(&out.ids, b)
	}
	for len(b) > 0 {
		// The first pass checked the tags and lengths.
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num != mapValue || typ != protowire.BytesType {
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		var err error
		if r.t != nil {
			err = d.readTensor(v, &r)
		} else {
			err = checkMessage(v, d.tensor)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// tensorReader reads the TensorProtos of one map entry into t, copying
// their strings into one buffer.
type tensorReader struct {
	t     *tensor
	arena []byte
}

// newTensorReader returns a reader into t, reset (a later entry of a key
// replaces an earlier one), with t's slices sized for the values in entry,
// the outputs map entry, so that reading it does not grow them. Sizing only
// counts: reading checks.
func newTensorReader(t *tensor, entry []byte) tensorReader {
	*t = tensor{}
	r := tensorReader{t: t}
	var dims, floats, doubles, strs, strBytes int
	eachField(entry, func(num protowire.Number, typ protowire.Type, v []byte) {
		if num != mapValue || typ != protowire.BytesType {
			return
		}
		eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) {
			switch {
			case num == tensorShape && typ == protowire.BytesType:
				eachField(v, func(num protowire.Number, typ protowire.Type, _ []byte) {
					if num == shapeDim && typ == protowire.BytesType {
						dims++
					}
				})
			case num == tensorFloatVal && typ == protowire.BytesType:
				floats += len(v) / 4
			case num == tensorFloatVal && typ == protowire.Fixed32Type:
				floats++
			case num == tensorDoubleVal && typ == protowire.BytesType:
				doubles += len(v) / 8
			case num == tensorDoubleVal && typ == protowire.Fixed64Type:
				doubles++
			case num == tensorStringVal && typ == protowire.BytesType:
				strs++
				strBytes += len(v)
			}
		})
	})
	if dims > 0 {
		t.dims = make([]int64, 0, dims)
	}
	if floats > 0 {
		t.floats = make([]float32, 0, floats)
	}
	if doubles > 0 {
		t.doubles = make([]float64, 0, doubles)
	}
	if strs > 0 {
		t.strings = make([][]byte, 0, strs)
		r.arena = make([]byte, 0, strBytes)
	}
	return r
}

// eachField calls f with each field of the message b, and the bytes of its
// value when it is length-delimited, until the end of b or the first
// malformed field.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return
		}
		f(num, typ, v)
		b = b[n:]
	}
}

// readTensor reads the TensorProto b into r's tensor, merging it into what
// the tensor holds.
func (d *responseDecoder) readTensor(b []byte, r *tensorReader) error {
	t := r.t
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b, "TensorProto")
		if err != nil {
			return err
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return wireError("TensorProto", n)
			}
		}
		switch {
		case num == tensorDType && typ == protowire.VarintType:
			var x uint64
			if x, n = protowire.ConsumeVarint(b); n < 0 {
				return wireError("TensorProto.dtype", n)
			}
			t.dtype = framework.DataType(int32(x))
		case num == tensorShape && typ == protowire.BytesType:
			if err := d.readShape(v, t); err != nil {
				return err
			}
		case num == tensorContent && typ == protowire.BytesType:
			t.content = append([]byte(nil), v...)
		case num == tensorFloatVal && typ == protowire.BytesType:
			if len(v)%4 != 0 {
				return fmt.Errorf("%w: packed float_val of %d bytes", errWire, len(v))
			}
			for ; len(v) > 0; v = v[4:] {
				t.floats = append(t.floats, math.Float32frombits(binary.LittleEndian.Uint32(v)))
			}
		case num == tensorFloatVal && typ == protowire.Fixed32Type:
			var x uint32
			if x, n = protowire.ConsumeFixed32(b); n < 0 {
				return wireError("TensorProto.float_val", n)
			}
			t.floats = append(t.floats, math.Float32frombits(x))
		case num == tensorDoubleVal && typ == protowire.BytesType:
			if len(v)%8 != 0 {
				return fmt.Errorf("%w: packed double_val of %d bytes", errWire, len(v))
			}
			for ; len(v) > 0; v = v[8:] {
				t.doubles = append(t.doubles, math.Float64frombits(binary.LittleEndian.Uint64(v)))
			}
		case num == tensorDoubleVal && typ == protowire.Fixed64Type:
			var x uint64
			if x, n = protowire.ConsumeFixed64(b); n < 0 {
				return wireError("TensorProto.double_val", n)
			}
			t.doubles = append(t.doubles, math.Float64frombits(x))
		case num == tensorStringVal && typ == protowire.BytesType:
			k := len(r.arena)
			r.arena = append(r.arena, v...)
			t.strings = append(t.strings, r.arena[k:len(r.arena):len(r.arena)])
		default:
			if n, err = checkField(b, d.tensor.Fields().ByNumber(num), num, typ); err != nil {
				return err
			}
		}
		b = b[n:]
	}
	return nil
}

// readShape reads a TensorShapeProto's dim sizes into t, after those it
// holds.
func (d *responseDecoder) readShape(b []byte, t *tensor) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b, "TensorShapeProto")
		if err != nil {
			return err
		}
		b = b[n:]
		if num == shapeDim && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return wireError("TensorShapeProto.dim", n)
			}
			size, err := d.readDim(v)
			if err != nil {
				return err
			}
			t.dims = append(t.dims, size)
			b = b[n:]
			continue
		}
		if n, err = checkField(b, d.shape.Fields().ByNumber(num), num, typ); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readDim reads a TensorShapeProto.Dim's size.
func (d *responseDecoder) readDim(b []byte) (int64, error) {
	var size int64
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b, "Dim")
		if err != nil {
			return 0, err
		}
		b = b[n:]
		if num == dimSize && typ == protowire.VarintType {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, wireError("Dim.size", n)
			}
			size = int64(x)
			b = b[n:]
			continue
		}
		if n, err = checkField(b, d.dim.Fields().ByNumber(num), num, typ); err != nil {
			return 0, err
		}
		b = b[n:]
	}
	return size, nil
}

// consumeTag parses a field's tag as protobuf's decoder does: a field number
// out of 1..MaxValidNumber is an error, and so is an end-group tag, as no
// group is open where it is called. in names the message, for the error.
func consumeTag(b []byte, in string) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	switch {
	case n < 0:
		return 0, 0, 0, wireError(in, n)
	case num > protowire.MaxValidNumber:
		return 0, 0, 0, fmt.Errorf("%w: %s: field number %d out of range", errWire, in, num)
	case typ == protowire.EndGroupType:
		return 0, 0, 0, fmt.Errorf("%w: %s: end of group %d outside a group", errWire, in, num)
	}
	return num, typ, n, nil
}

// checkMessage checks b, the bytes of a message md describes, as
// proto.Unmarshal would decode them, keeping nothing.
func checkMessage(b []byte, md protoreflect.MessageDescriptor) error {
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b, string(md.Name()))
		if err != nil {
			return err
		}
		b = b[n:]
		if n, err = checkField(b, fields.ByNumber(num), num, typ); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// checkField checks the value at the start of b of a field whose tag has
// been read, and returns its length. fd describes the field, nil when it is
// unknown; like protobuf, it takes a known field of another wire type than
// its own for an unknown field.
func checkField(b []byte, fd protoreflect.FieldDescriptor, num protowire.Number, typ protowire.Type) (int, error) {
	if fd == nil {
		return skipField(b, num, typ)
	}
	var v []byte
	n := 0
	if typ == protowire.BytesType {
		if v, n = protowire.ConsumeBytes(b); n < 0 {
			return 0, wireError(string(fd.FullName()), n)
		}
	}
	switch kind := fd.Kind(); {
	case fd.IsMap():
		if typ != protowire.BytesType {
			return skipField(b, num, typ)
		}
		return n, checkMapEntry(v, fd)
	case kind == protoreflect.MessageKind:
		if typ != protowire.BytesType {
			return skipField(b, num, typ)
		}
		return n, checkMessage(v, fd.Message())
	case kind == protoreflect.GroupKind:
		// Proto3 has no groups, so TF Serving's messages have none
		// (TestDecoderKnowsTheSchema).
		return 0, fmt.Errorf("%w: group field %s is not supported", errWire, fd.FullName())
	case kind == protoreflect.StringKind || kind == protoreflect.BytesKind:
		if typ != protowire.BytesType {
			return skipField(b, num, typ)
		}
		if kind == protoreflect.StringKind && enforceUTF8(fd) && !utf8.Valid(v) {
			return 0, fmt.Errorf("%w: %s is not valid UTF-8", errWire, fd.FullName())
		}
		return n, nil
	}
	// A scalar, in its own wire type or, repeated, packed.
	own := scalarWireType(fd.Kind())
	if typ == protowire.BytesType && fd.IsList() {
		for len(v) > 0 {
			k := protowire.ConsumeFieldValue(num, own, v)
			if k < 0 {
				return 0, wireError(string(fd.FullName()), k)
			}
			v = v[k:]
		}
		return n, nil
	}
	return skipField(b, num, typ) // its own wire type, or unknown
}

// skipField returns the length of the value of a field read as unknown,
// checking its wire format.
func skipField(b []byte, num protowire.Number, typ protowire.Type) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, wireError(fmt.Sprintf("field %d", num), n)
	}
	return n, nil
}

// checkMapEntry checks an entry, {1: key, 2: value}, of the map field fd.
func checkMapEntry(b []byte, fd protoreflect.FieldDescriptor) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b, string(fd.Name())+" entry")
		if err != nil {
			return err
		}
		b = b[n:]
		var field protoreflect.FieldDescriptor
		switch num {
		case mapKey:
			field = fd.MapKey()
		case mapValue:
			field = fd.MapValue()
		}
		if n, err = checkField(b, field, num, typ); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// scalarWireType is the wire type of a scalar kind.
func scalarWireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.FloatKind, protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return protowire.Fixed32Type
	case protoreflect.DoubleKind, protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return protowire.Fixed64Type
	}
	return protowire.VarintType
}

// enforceUTF8 reports whether protobuf requires a string field to be valid
// UTF-8, as it decides: always in proto3, as the field's features say in
// editions.
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return e.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}
