// Package onnxgen writes small ONNX models without Python: the protobuf
// encoding of the few onnx.proto messages a model needs (upstream field
// numbers), and builders for the recommendation graphs the onnx backend's
// tests run. The demo generator (examples/demo/gen) builds nn@1 with it. The
// output is deterministic: the same Graph gives the same bytes.
package onnxgen

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX TensorProto.DataType values.
const (
	Float  int32 = 1
	Int32  int32 = 6
	Int64  int32 = 7
	String int32 = 8
	Bool   int32 = 9
	Double int32 = 11
)

// Tensor is an initializer or attribute value. Exactly one of the data
// slices matching DType is set.
type Tensor struct {
	Name    string
	DType   int32
	Dims    []int64
	Float   []float32
	Int64   []int64
	Strings []string
}

// Node is one operator.
type Node struct {
	Op      string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Attr is a node attribute: an int or a tensor.
type Attr struct {
	Name   string
	Int    *int64
	Tensor *Tensor
}

// Value is a graph input or output. A dim < 0 is symbolic ("batch", "n", …).
type Value struct {
	Name  string
	DType int32
	Dims  []int64
}

// Graph is a whole model: ir_version 8, default-domain opset 13.
type Graph struct {
	Nodes        []Node
	Initializers []Tensor
	Inputs       []Value
	Outputs      []Value
}

// Marshal encodes the graph as an ONNX ModelProto.
func (g *Graph) Marshal() []byte {
	var graph []byte
	for _, n := range g.Nodes {
		graph = msg(graph, 1, n.marshal())
	}
	graph = str(graph, 2, "modelgate_test")
	for _, t := range g.Initializers {
		graph = msg(graph, 5, t.marshal())
	}
	for _, v := range g.Inputs {
		graph = msg(graph, 11, v.marshal())
	}
	for _, v := range g.Outputs {
		graph = msg(graph, 12, v.marshal())
	}

	var opset []byte
	opset = str(opset, 1, "")
	opset = varint(opset, 2, 13)

	var m []byte
	m = varint(m, 1, 8) // ir_version
	m = str(m, 2, "modelgate-onnxgen")
	m = msg(m, 7, graph)
	m = msg(m, 8, opset)
	return m
}

func (n *Node) marshal() []byte {
	var b []byte
	for _, s := range n.Inputs {
		b = str(b, 1, s)
	}
	for _, s := range n.Outputs {
		b = str(b, 2, s)
	}
	b = str(b, 4, n.Op)
	for _, a := range n.Attrs {
		var ab []byte
		ab = str(ab, 1, a.Name)
		switch {
		case a.Int != nil:
			ab = varint(ab, 3, uint64(*a.Int))
			ab = varint(ab, 20, 2) // INT
		case a.Tensor != nil:
			ab = msg(ab, 5, a.Tensor.marshal())
			ab = varint(ab, 20, 4) // TENSOR
		}
		b = msg(b, 5, ab)
	}
	return b
}

func (t *Tensor) marshal() []byte {
	var b []byte
	for _, d := range t.Dims {
		b = varint(b, 1, uint64(d))
	}
	b = varint(b, 2, uint64(t.DType))
	if t.Name != "" {
		b = str(b, 8, t.Name)
	}
	switch t.DType {
	case String:
		for _, s := range t.Strings {
			b = str(b, 6, s)
		}
	case Float:
		raw := make([]byte, 4*len(t.Float))
		for i, v := range t.Float {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		b = bytesField(b, 9, raw)
	case Int64:
		raw := make([]byte, 8*len(t.Int64))
		for i, v := range t.Int64 {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
		b = bytesField(b, 9, raw)
	}
	return b
}

func (v *Value) marshal() []byte {
	var shape []byte
	for i, d := range v.Dims {
		var dim []byte
		if d >= 0 {
			dim = varint(dim, 1, uint64(d))
		} else {
			dim = str(dim, 2, "d"+string(rune('0'+i)))
		}
		shape = msg(shape, 1, dim)
	}
	var tt []byte
	tt = varint(tt, 1, uint64(v.DType))
	tt = msg(tt, 2, shape)
	var typ []byte
	typ = msg(typ, 1, tt)
	var b []byte
	b = str(b, 1, v.Name)
	b = msg(b, 2, typ)
	return b
}

func varint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func str(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func bytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func msg(b []byte, num protowire.Number, m []byte) []byte {
	return bytesField(b, num, m)
}
