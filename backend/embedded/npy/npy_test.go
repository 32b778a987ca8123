package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// numpyFile builds a file the way numpy.save lays it out, independently of
// Write: magic, version, header length, the dict padded with spaces to a
// 64-byte boundary and ended by a newline, then the data.
func numpyFile(major byte, dict string, data []float32) []byte {
	lenSize := 2
	if major > 1 {
		lenSize = 4
	}
	hdr := dict
	for (8+lenSize+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	b := []byte("\x93NUMPY")
	b = append(b, major, 0)
	if lenSize == 2 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	}
	b = append(b, hdr...)
	for _, v := range data {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

const dict23 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"

var data23 = []float32{0, 1, 2, 3.5, -4, float32(math.Pi)}

func TestReadVersions(t *testing.T) {
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"v1", numpyFile(1, dict23, data23)},
		{"v2", numpyFile(2, dict23, data23)},
		{"v3", numpyFile(3, dict23, data23)},
		{"double quotes, no trailing comma", numpyFile(1, `{"descr": "<f4", "fortran_order": False, "shape": (2, 3)}`, data23)},
		{"keys in another order", numpyFile(1, "{'shape': (2,3), 'fortran_order': False, 'descr': '<f4'}", data23)},
		{"python 2 longs", numpyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", data23)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Read(bytes.NewReader(tc.file), int64(len(tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if m.Rows != 2 || m.Cols != 3 || !slices.Equal(m.Data, data23) {
				t.Fatalf("got %d×%d %v, want 2×3 %v", m.Rows, m.Cols, m.Data, data23)
			}
			if got := m.Row(1); !slices.Equal(got, data23[3:]) {
				t.Errorf("Row(1) = %v", got)
			}
			// An unknown size reads the same.
			m2, err := Read(bytes.NewReader(tc.file), -1)
			if err != nil || !slices.Equal(m2.Data, data23) {
				t.Errorf("size -1: %v, %v", m2, err)
			}
		})
	}
}

func TestWriteMatchesNumpyLayout(t *testing.T) {
	for _, major := range []byte{1, 2, 3} {
		var buf bytes.Buffer
		if err := write(&buf, &Matrix{Rows: 2, Cols: 3, Data: data23}, major); err != nil {
			t.Fatal(err)
		}
		if want := numpyFile(major, dict23, data23); !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("v%d: Write produced\n%q\nwant\n%q", major, buf.Bytes(), want)
		}
	}
}

func TestWriteFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.npy")
	in := &Matrix{Rows: 3000, Cols: 7, Data: make([]float32, 21000)}
	for i := range in.Data {
		in.Data[i] = float32(i) * 0.25
	}
	if err := WriteFile(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Rows != in.Rows || out.Cols != in.Cols || !slices.Equal(out.Data, in.Data) {
		t.Fatal("round trip changed the matrix")
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.npy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	if err := Write(io.Discard, &Matrix{Rows: 2, Cols: 2, Data: []float32{1}}); err == nil {
		t.Error("Write accepted a matrix whose data does not match its shape")
	}
}

func TestReadEmpty(t *testing.T) {
	f := numpyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 16), }", nil)
	m, err := Read(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != 0 || m.Cols != 16 || len(m.Data) != 0 {
		t.Errorf("got %+v", m)
	}
}

func TestReadErrors(t *testing.T) {
	good := numpyFile(1, dict23, data23)
	withVersion := func(major, minor byte) []byte {
		b := slices.Clone(good)
		b[6], b[7] = major, minor
		return b
	}
	hdr := func(dict string) []byte { return numpyFile(1, dict, data23) }
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"short magic", []byte("\x93NUM"), "truncated"},
		{"bad magic", append([]byte("PK\x03\x04NUMPY"), good[10:]...), "bad magic"},
		{"version 4", withVersion(4, 0), "unsupported format version 4.0"},
		{"version 1.1", withVersion(1, 1), "unsupported format version 1.1"},
		{"no header length", good[:9], "truncated"},
		{"header length past the end", good[:40], "truncated: header length"},
		{"data truncated", good[:len(good)-1], "truncated: shape (2, 3) needs 24 data bytes but the file has 23"},
		{"extra data", append(slices.Clone(good), 0, 0, 0, 0), "size mismatch"},
		{"float64", numpyFile(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3), }", data23), `unsupported dtype "<f8"`},
		{"big-endian float32", hdr("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }"), `unsupported dtype ">f4"`},
		{"int32", hdr("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }"), `unsupported dtype "<i4"`},
		{"structured", hdr("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }"), "structured"},
		{"fortran order", hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"), "fortran_order True"},
		{"1-D", numpyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", data23), "unsupported shape: 1-D (want 2-D)"},
		{"3-D", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }"), "unsupported shape: 3-D (want 2-D)"},
		{"scalar", numpyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", data23[:1]), "unsupported shape: 0-D"},
		{"negative dim", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }"), "bad header"},
		{"huge dims", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2000000000, 2000000000), }"), "too large"},
		{"lying dims", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (200000000, 2000), }"), "truncated: shape (200000000, 2000) needs 1600000000000 data bytes but the file has 24"},
		{"dim overflows", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3), }"), "too large"},
		{"missing shape", hdr("{'descr': '<f4', 'fortran_order': False}"), "no 'shape'"},
		{"missing descr", hdr("{'fortran_order': False, 'shape': (2, 3)}"), "no 'descr'"},
		{"missing order", hdr("{'descr': '<f4', 'shape': (2, 3)}"), "no 'fortran_order'"},
		{"unknown key", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}"), `unexpected key "x"`},
		{"duplicate key", hdr("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}"), "duplicate key"},
		{"not a dict", hdr("('<f4', False, (2, 3))"), "not a dictionary"},
		{"unterminated", hdr("{'descr': '<f4"), "unterminated string"},
		{"garbage after dict", hdr(dict23 + " x"), "after the dictionary"},
		{"shape not a tuple", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': 6}"), "shape is not a tuple"},
		{"order not a bool", hdr("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}"), "fortran_order is not True or False"},
		{"deep nesting", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': " + strings.Repeat("(", 50) + "}"), "nested too deeply"},
		{"non-ASCII in v1", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'é': 1}"), "non-ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.file), int64(len(tc.file)))
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %q does not wrap ErrFormat", err)
			}
		})
	}
}

// A reader that fails is reported as such, not as a malformed file.
func TestReadIOError(t *testing.T) {
	boom := errors.New("disk on fire")
	hdr := numpyFile(1, dict23, nil)
	_, err := Read(io.MultiReader(bytes.NewReader(hdr), errReader{boom}), int64(len(hdr)+24))
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func FuzzReadNpy(f *testing.F) {
	f.Add(numpyFile(1, dict23, data23))
	f.Add(numpyFile(2, dict23, data23))
	f.Add(numpyFile(3, dict23, data23))
	f.Add(numpyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2000000000, 2000000000), }", nil))
	f.Add(numpyFile(1, "{'descr': [('a', '<f4')], 'shape': ((1,), [2]), }", nil))
	f.Add([]byte("\x93NUMPY\x02\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if m != nil {
				t.Fatal("matrix returned with an error")
			}
			return
		}
		// Accepted data was all in the input: no header can claim more.
		if 4*len(m.Data) > len(b) || len(m.Data) != m.Rows*m.Cols {
			t.Fatalf("%d×%d matrix with %d values from %d bytes", m.Rows, m.Cols, len(m.Data), len(b))
		}
		// What was read writes back and reads again unchanged.
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			t.Fatal(err)
		}
		m2, err := Read(&buf, int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if m2.Rows != m.Rows || m2.Cols != m.Cols || len(m2.Data) != len(m.Data) {
			t.Fatal("round trip changed the shape")
		}
		for i := range m.Data {
			if math.Float32bits(m.Data[i]) != math.Float32bits(m2.Data[i]) {
				t.Fatal("round trip changed the data")
			}
		}
	})
}
