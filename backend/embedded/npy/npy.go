// Package npy reads and writes 2-D float32 matrices in NumPy's .npy format.
//
// Only what embedding/v1 models need is supported: format versions 1.0, 2.0
// and 3.0, dtype '<f4' (little-endian float32), a 2-D shape and C order
// (fortran_order False). Anything else is rejected with an error that says
// why, never with a panic: a file is untrusted input.
//
// The format is specified at
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html.
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"unicode/utf8"
)

// Matrix is a dense row-major float32 matrix: element (r, c) is
// Data[r*Cols+c]. The zero value is an empty 0×0 matrix.
type Matrix struct {
	Rows, Cols int
	Data       []float32
}

// Row returns row r as a slice of Data (not a copy).
func (m *Matrix) Row(r int) []float32 {
	return m.Data[r*m.Cols : (r+1)*m.Cols : (r+1)*m.Cols]
}

// ErrFormat is wrapped by every error about the file's content (as opposed
// to an I/O error from the reader), so callers can tell a malformed file
// from an unreadable one.
var ErrFormat = errors.New("npy: malformed file")

// formatError wraps ErrFormat without repeating its text, so messages read
// "bad magic …" rather than "npy: malformed file: bad magic …".
type formatError struct{ msg string }

func (e *formatError) Error() string        { return e.msg }
func (e *formatError) Is(target error) bool { return target == ErrFormat }

func errorf(format string, args ...any) error {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

const (
	magic = "\x93NUMPY"
	// maxHeaderLen bounds the header we are willing to read. NumPy itself
	// refuses headers over 10,000 bytes by default; 1 MiB leaves room for
	// odd writers while keeping a lying length field harmless.
	maxHeaderLen = 1 << 20
	// maxNest bounds the nesting of tuples and lists in the header, so a
	// crafted header cannot recurse deeply.
	maxNest = 8
)

// ReadFile reads the .npy file at path. Its size is checked against the
// shape in the header before any data is allocated.
func ReadFile(path string) (*Matrix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return Read(f, st.Size())
}

// Read reads one .npy matrix from r, which must hold exactly size bytes: a
// shape that does not match size is an error, found before the data is
// allocated, so a lying header cannot make Read allocate more than the input
// justifies. A negative size means unknown: the data is then read in full
// before the shape is trusted.
func Read(r io.Reader, size int64) (*Matrix, error) {
	br := bufio.NewReaderSize(r, 64<<10)

	var pre [8]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return nil, truncated(err, "magic string")
	}
	if string(pre[:6]) != magic {
		return nil, errorf("bad magic string: not a .npy file")
	}
	major, minor := pre[6], pre[7]
	var lenSize int
	switch major {
	case 1:
		lenSize = 2
	case 2, 3:
		lenSize = 4
	default:
		return nil, errorf("unsupported format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if minor != 0 {
		return nil, errorf("unsupported format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	var lb [4]byte
	if _, err := io.ReadFull(br, lb[:lenSize]); err != nil {
		return nil, truncated(err, "header length")
	}
	var hlen int64
	if lenSize == 2 {
		hlen = int64(binary.LittleEndian.Uint16(lb[:2]))
	} else {
		hlen = int64(binary.LittleEndian.Uint32(lb[:4]))
	}
	prefix := int64(8 + lenSize)
	if hlen > maxHeaderLen {
		return nil, errorf("header length %d exceeds the limit of %d bytes", hlen, maxHeaderLen)
	}
	if size >= 0 && prefix+hlen > size {
		return nil, errorf("truncated: header length %d but the file has %d bytes", hlen, size)
	}
	header := make([]byte, hlen)
	if _, err := io.ReadFull(br, header); err != nil {
		return nil, truncated(err, "header")
	}
	rows, cols, err := parseHeader(header, major)
	if err != nil {
		return nil, err
	}

	// Checked before multiplying: rows*cols*4 must not overflow, and must
	// match what the file holds.
	if cols > 0 && int64(rows) > math.MaxInt64/4/int64(cols) {
		return nil, errorf("shape (%d, %d) is too large", rows, cols)
	}
	want := int64(rows) * int64(cols) * 4
	if size >= 0 {
		if have := size - prefix - hlen; have != want {
			if have < want {
				return nil, errorf("truncated: shape (%d, %d) needs %d data bytes but the file has %d", rows, cols, want, have)
			}
			return nil, errorf("size mismatch: shape (%d, %d) needs %d data bytes but the file has %d", rows, cols, want, have)
		}
	}
	if want > math.MaxInt {
		return nil, errorf("shape (%d, %d) is too large", rows, cols)
	}
	m := &Matrix{Rows: rows, Cols: cols}
	if size < 0 {
		// Without a known size, grow as data arrives instead of trusting
		// the header.
		return readUnsized(br, m, want)
	}
	m.Data = make([]float32, rows*cols)
	if err := readFloats(br, m.Data); err != nil {
		return nil, err
	}
	return m, nil
}

// readUnsized reads want bytes of data without allocating them up front.
func readUnsized(r io.Reader, m *Matrix, want int64) (*Matrix, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, want+1))
	if err != nil {
		return nil, err
	}
	if n != want {
		if n < want {
			return nil, errorf("truncated: shape (%d, %d) needs %d data bytes but the file has %d", m.Rows, m.Cols, want, n)
		}
		return nil, errorf("size mismatch: shape (%d, %d) needs %d data bytes but the file has more", m.Rows, m.Cols, want)
	}
	b := buf.Bytes()
	m.Data = make([]float32, m.Rows*m.Cols)
	for i := range m.Data {
		m.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return m, nil
}

func readFloats(r io.Reader, dst []float32) error {
	var buf [16 << 10]byte
	for len(dst) > 0 {
		n := min(len(dst), len(buf)/4)
		if _, err := io.ReadFull(r, buf[:4*n]); err != nil {
			return truncated(err, "data")
		}
		for i := range n {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
		dst = dst[n:]
	}
	// The size check guarantees nothing follows; a reader that lied
	// about its size is caught here.
	var one [1]byte
	if n, _ := r.Read(one[:]); n > 0 {
		return errorf("size mismatch: data continues past the shape")
	}
	return nil
}

func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf("truncated: file ends in the %s", what)
	}
	return err
}

// parseHeader reads the header dictionary, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 16), }
func parseHeader(h []byte, major byte) (rows, cols int, err error) {
	if major < 3 {
		for _, c := range h {
			if c >= 0x80 {
				return 0, 0, errorf("bad header: non-ASCII byte in a version %d.0 header", major)
			}
		}
	} else if !utf8.Valid(h) {
		return 0, 0, errorf("bad header: not valid UTF-8")
	}
	p := &parser{s: h}
	v, err := p.value(0)
	if err != nil {
		return 0, 0, err
	}
	p.space()
	if p.i != len(p.s) {
		return 0, 0, errorf("bad header: unexpected %q after the dictionary", p.rest())
	}
	d, ok := v.(dict)
	if !ok {
		return 0, 0, errorf("bad header: not a dictionary")
	}
	var haveDescr, haveOrder, haveShape bool
	for _, kv := range d {
		switch kv.key {
		case "descr":
			haveDescr = true
			s, ok := kv.val.(string)
			if !ok {
				return 0, 0, errorf("unsupported dtype: structured arrays are not supported (want '<f4')")
			}
			if s != "<f4" {
				return 0, 0, errorf("unsupported dtype %q (want '<f4', little-endian float32)", s)
			}
		case "fortran_order":
			haveOrder = true
			b, ok := kv.val.(bool)
			if !ok {
				return 0, 0, errorf("bad header: fortran_order is not True or False")
			}
			if b {
				return 0, 0, errorf("unsupported fortran_order True (want C order)")
			}
		case "shape":
			haveShape = true
			t, ok := kv.val.(tuple)
			if !ok {
				return 0, 0, errorf("bad header: shape is not a tuple")
			}
			if len(t) != 2 {
				return 0, 0, errorf("unsupported shape: %d-D (want 2-D)", len(t))
			}
			var dims [2]int
			for i, x := range t {
				n, ok := x.(int)
				if !ok {
					return 0, 0, errorf("bad header: shape holds a non-integer")
				}
				dims[i] = n
			}
			rows, cols = dims[0], dims[1]
		default:
			return 0, 0, errorf("bad header: unexpected key %q", kv.key)
		}
	}
	switch {
	case !haveDescr:
		return 0, 0, errorf("bad header: no 'descr'")
	case !haveOrder:
		return 0, 0, errorf("bad header: no 'fortran_order'")
	case !haveShape:
		return 0, 0, errorf("bad header: no 'shape'")
	}
	return rows, cols, nil
}

// The header is a Python literal. These are the values it can hold here.
type (
	dict  []keyValue
	tuple []any // also Python lists: nothing here needs to tell them apart
)

type keyValue struct {
	key string
	val any
}

type parser struct {
	s []byte
	i int
}

func (p *parser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20]
	}
	return string(r)
}

func (p *parser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) value(depth int) (any, error) {
	if depth > maxNest {
		return nil, errorf("bad header: nested too deeply")
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, errorf("bad header: ends early")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		return p.dict(depth)
	case c == '(':
		p.i++
		return p.seq(')', depth)
	case c == '[':
		p.i++
		return p.seq(']', depth)
	case c == '\'' || c == '"':
		return p.str()
	case c >= '0' && c <= '9':
		return p.int()
	case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		start := p.i
		for p.i < len(p.s) && (p.s[p.i] >= 'A' && p.s[p.i] <= 'Z' || p.s[p.i] >= 'a' && p.s[p.i] <= 'z') {
			p.i++
		}
		switch w := string(p.s[start:p.i]); w {
		case "True":
			return true, nil
		case "False":
			return false, nil
		default:
			return nil, errorf("bad header: unexpected word %q", w)
		}
	default:
		return nil, errorf("bad header: unexpected %q", p.rest())
	}
}

func (p *parser) dict(depth int) (any, error) {
	var d dict
	for {
		if p.eat('}') {
			return d, nil
		}
		p.space()
		if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
			return nil, errorf("bad header: dictionary key is not a string")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		for _, kv := range d {
			if kv.key == k {
				return nil, errorf("bad header: duplicate key %q", k)
			}
		}
		if !p.eat(':') {
			return nil, errorf("bad header: no ':' after key %q", k)
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		d = append(d, keyValue{k, v})
		if p.eat('}') {
			return d, nil
		}
		if !p.eat(',') {
			return nil, errorf("bad header: expected ',' or '}' in the dictionary")
		}
	}
}

func (p *parser) seq(end byte, depth int) (any, error) {
	var t tuple
	for {
		if p.eat(end) {
			return t, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		t = append(t, v)
		if p.eat(end) {
			return t, nil
		}
		if !p.eat(',') {
			return nil, errorf("bad header: expected ',' or %q in a sequence", end)
		}
	}
}

// str reads a quoted string without escapes: no name or dtype in a header
// this package accepts needs one.
func (p *parser) str() (string, error) {
	q := p.s[p.i]
	p.i++
	start := p.i
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case q:
			s := string(p.s[start:p.i])
			p.i++
			return s, nil
		case '\n':
			return "", errorf("bad header: unterminated string")
		case '\\':
			return "", errorf("bad header: escapes in strings are not supported")
		}
		p.i++
	}
	return "", errorf("bad header: unterminated string")
}

// int reads a non-negative decimal integer; a trailing L (Python 2's long,
// as in old files' "(1000L, 16L)") is accepted.
func (p *parser) int() (any, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	n, err := strconv.ParseInt(string(p.s[start:p.i]), 10, 64)
	if err != nil || n > math.MaxInt32 {
		// No embedding table has 2^31 rows; the bound keeps every later
		// product inside int64, on 32-bit platforms too.
		return nil, errorf("bad header: dimension %.20s is too large", p.s[start:p.i])
	}
	if p.i < len(p.s) && p.s[p.i] == 'L' {
		p.i++
	}
	return int(n), nil
}

// Write writes m to w as a version 1.0 .npy file with dtype '<f4', the
// layout numpy.save produces for a C-ordered float32 array.
func Write(w io.Writer, m *Matrix) error {
	return write(w, m, 1)
}

// WriteFile writes m to the file at path (see Write), replacing it.
func WriteFile(path string, m *Matrix) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, m); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func write(w io.Writer, m *Matrix, major byte) error {
	if m.Rows < 0 || m.Cols < 0 || len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("npy: matrix is %d×%d but holds %d values", m.Rows, m.Cols, len(m.Data))
	}
	dict := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", m.Rows, m.Cols)
	lenSize := 2
	if major > 1 {
		lenSize = 4
	}
	// Pad with spaces and end with a newline so that the data starts on a
	// 64-byte boundary, as numpy does.
	total := 8 + lenSize + len(dict) + 1
	pad := (64 - total%64) % 64
	header := make([]byte, 0, total+pad+4*len(m.Data))
	header = append(header, magic...)
	header = append(header, major, 0)
	hlen := len(dict) + pad + 1
	if lenSize == 2 {
		header = binary.LittleEndian.AppendUint16(header, uint16(hlen))
	} else {
		header = binary.LittleEndian.AppendUint32(header, uint32(hlen))
	}
	header = append(header, dict...)
	header = append(header, bytes.Repeat([]byte{' '}, pad)...)
	header = append(header, '\n')
	for _, v := range m.Data {
		header = binary.LittleEndian.AppendUint32(header, math.Float32bits(v))
	}
	_, err := w.Write(header)
	return err
}
