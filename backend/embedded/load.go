// Package embedded runs embedding/v1 models in-process: a catalogue of item
// vectors, optional user vectors, and exact top-k retrieval by dot product
// or cosine similarity. The format is described in API.md ("Embedded model
// format embedding/v1"); Load reads it and Model.Predict answers requests.
package embedded

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/modelgate/modelgate/backend/embedded/npy"
)

// Format is the value of "format" in model.json that this package reads.
const Format = "embedding/v1"

// The files of a model directory.
const (
	ModelFile     = "model.json"
	ItemsFile     = "items.npy"
	ItemIDsFile   = "items.txt"
	UsersFile     = "users.npy"
	UserIDsFile   = "users.txt"
	maxConfigSize = 1 << 20
)

// Scoring is how a user vector and an item vector are compared.
type Scoring string

// The scorings model.json may name.
const (
	// Dot scores by the raw dot product.
	Dot Scoring = "dot"
	// Cosine scores by the cosine of the angle; a zero vector scores 0
	// against everything.
	Cosine Scoring = "cosine"
)

// LoadError is the error Load returns for a model directory it cannot use.
// It names the file at fault (File, relative to Dir) and the reason, e.g.
// "items.txt: 999 ids but items.npy has 1000 rows", and is meant to be
// shown as is to whoever registered the model. File is empty when the
// directory itself is at fault.
type LoadError struct {
	Dir  string
	File string
	Err  error
}

func (e *LoadError) Error() string {
	if e.File == "" {
		return e.Dir + ": " + e.Err.Error()
	}
	return e.File + ": " + e.Err.Error()
}

// Unwrap returns the reason, e.g. fs.ErrNotExist for a missing file or an
// error wrapping npy.ErrFormat for a malformed matrix.
func (e *LoadError) Unwrap() error { return e.Err }

// Load reads the embedding/v1 model in dir. It validates everything up
// front (format, dtypes, shapes, ids, finite values), so a model that loads
// never fails a request for a reason its files could have shown. Errors are
// *LoadError.
//
// With cosine scoring the vectors are normalised here, once. The
// cold-start vector (see Predict) is computed here too.
func Load(dir string) (*Model, error) {
	fail := func(file string, format string, args ...any) error {
		return &LoadError{Dir: dir, File: file, Err: fmt.Errorf(format, args...)}
	}
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &LoadError{Dir: dir, Err: fmt.Errorf("model directory does not exist: %w", fs.ErrNotExist)}
		}
		return nil, &LoadError{Dir: dir, Err: err}
	}
	if !st.IsDir() {
		return nil, &LoadError{Dir: dir, Err: errors.New("not a directory")}
	}

	scoring, err := readConfig(filepath.Join(dir, ModelFile))
	if err != nil {
		return nil, &LoadError{Dir: dir, File: ModelFile, Err: err}
	}

	items, err := readMatrix(dir, ItemsFile)
	if err != nil {
		return nil, err
	}
	if items.Rows == 0 {
		return nil, fail(ItemsFile, "no rows: the catalogue is empty")
	}
	if items.Cols == 0 {
		return nil, fail(ItemsFile, "0 columns: vectors must have at least one dimension")
	}
	itemIDs, err := readIDs(filepath.Join(dir, ItemIDsFile))
	if err != nil {
		return nil, &LoadError{Dir: dir, File: ItemIDsFile, Err: err}
	}
	if len(itemIDs) != items.Rows {
		return nil, fail(ItemIDsFile, "%d ids but %s has %d rows", len(itemIDs), ItemsFile, items.Rows)
	}

	m := &Model{
		scoring:   scoring,
		dim:       items.Cols,
		items:     items.Data,
		itemIDs:   itemIDs,
		itemIndex: index(itemIDs),
		itemRank:  ranks(itemIDs),
	}

	usersPath := filepath.Join(dir, UsersFile)
	userIDsPath := filepath.Join(dir, UserIDsFile)
	haveUsers, err := exists(usersPath)
	if err != nil {
		return nil, &LoadError{Dir: dir, File: UsersFile, Err: err}
	}
	haveUserIDs, err := exists(userIDsPath)
	if err != nil {
		return nil, &LoadError{Dir: dir, File: UserIDsFile, Err: err}
	}
	switch {
	case haveUsers && !haveUserIDs:
		return nil, fail(UserIDsFile, "missing, but %s is present (give both or neither)", UsersFile)
	case haveUserIDs && !haveUsers:
		return nil, fail(UsersFile, "missing, but %s is present (give both or neither)", UserIDsFile)
	case haveUsers:
		users, err := readMatrix(dir, UsersFile)
		if err != nil {
			return nil, err
		}
		if users.Cols != items.Cols {
			return nil, fail(UsersFile, "%d columns but %s has %d: user and item vectors must have the same dimension", users.Cols, ItemsFile, items.Cols)
		}
		userIDs, err := readIDs(userIDsPath)
		if err != nil {
			return nil, &LoadError{Dir: dir, File: UserIDsFile, Err: err}
		}
		if len(userIDs) != users.Rows {
			return nil, fail(UserIDsFile, "%d ids but %s has %d rows", len(userIDs), UsersFile, users.Rows)
		}
		m.users = users.Data
		m.userIndex = index(userIDs)
	}

	if scoring == Cosine {
		normalizeRows(m.items, m.dim)
		normalizeRows(m.users, m.dim)
	}
	m.cold = meanRow(m.items, m.dim)
	if scoring == Cosine {
		normalizeRows(m.cold, m.dim)
	}
	m.pool.New = func() any { return new(scratch) }
	return m, nil
}

type config struct {
	Format  string  `json:"format"`
	Scoring Scoring `json:"scoring"`
}

func readConfig(path string) (Scoring, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", openError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxConfigSize {
		return "", fmt.Errorf("larger than %d bytes", maxConfigSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c config
	if err := dec.Decode(&c); err != nil {
		return "", fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", errors.New("invalid JSON: data after the object")
	}
	if c.Format != Format {
		return "", fmt.Errorf("format %q is not %q", c.Format, Format)
	}
	switch c.Scoring {
	case Dot, Cosine:
		return c.Scoring, nil
	case "":
		return "", fmt.Errorf("scoring is required (%q or %q)", Dot, Cosine)
	default:
		return "", fmt.Errorf("unknown scoring %q (want %q or %q)", c.Scoring, Dot, Cosine)
	}
}

// readMatrix reads a float32 matrix and rejects non-finite values: a NaN
// would make the ranking order undefined, and it is a training bug worth
// hearing about at registration.
func readMatrix(dir, name string) (*npy.Matrix, error) {
	m, err := npy.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, &LoadError{Dir: dir, File: name, Err: openError(err)}
	}
	for i, v := range m.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, &LoadError{Dir: dir, File: name,
				Err: fmt.Errorf("row %d column %d is %v: vectors must be finite", i/m.Cols, i%m.Cols, v)}
		}
	}
	return m, nil
}

// readIDs reads one id per line. A final newline is optional, and a
// carriage return before a newline is dropped (files written on Windows).
// Empty, duplicate or non-UTF-8 ids are errors.
func readIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, openError(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	var ids []string
	seen := make(map[string]int)
	for line := 1; sc.Scan(); line++ {
		id := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case id == "":
			return nil, fmt.Errorf("line %d is empty: ids must be non-empty", line)
		case !utf8.ValidString(id):
			return nil, fmt.Errorf("line %d is not valid UTF-8", line)
		}
		if first, dup := seen[id]; dup {
			return nil, fmt.Errorf("line %d: duplicate id %q (first on line %d)", line, id, first)
		}
		seen[id] = line
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d is longer than %d bytes", len(ids)+1, 64<<10)
		}
		return nil, err
	}
	return ids, nil
}

// openError shortens "open /long/path/items.npy: no such file or directory"
// to "file does not exist"; the LoadError already names the file.
func openError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fs.ErrNotExist
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, openError(err)
	}
}

func index(ids []string) map[string]int32 {
	m := make(map[string]int32, len(ids))
	for i, id := range ids {
		m[id] = int32(i)
	}
	return m
}

// ranks returns each id's position in ascending id order, so that ties in
// score are broken by comparing two integers instead of two strings.
func ranks(ids []string) []int32 {
	order := make([]int32, len(ids))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(ids[a], ids[b]) })
	r := make([]int32, len(ids))
	for pos, i := range order {
		r[i] = int32(pos)
	}
	return r
}

// normalizeRows scales each row of the row-major data to unit length; zero
// rows stay zero. The norm is computed in float64 so that large values
// cannot overflow.
func normalizeRows(data []float32, dim int) {
	for off := 0; off+dim <= len(data); off += dim {
		row := data[off : off+dim]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		if ss == 0 {
			continue
		}
		inv := 1 / math.Sqrt(ss)
		for i, v := range row {
			row[i] = float32(float64(v) * inv)
		}
	}
}

// meanRow returns the mean of the rows, computed in float64.
func meanRow(data []float32, dim int) []float32 {
	sum := make([]float64, dim)
	n := len(data) / dim
	for off := 0; off+dim <= len(data); off += dim {
		for i, v := range data[off : off+dim] {
			sum[i] += float64(v)
		}
	}
	mean := make([]float32, dim)
	for i, s := range sum {
		mean[i] = float32(s / float64(n))
	}
	return mean
}

// Model is a loaded embedding/v1 model. It is immutable after Load and safe
// for concurrent use by any number of goroutines. The zero value is not
// usable; get a Model from Load.
type Model struct {
	scoring   Scoring
	dim       int
	items     []float32 // N×dim, row-major; unit rows under cosine
	itemIDs   []string
	itemIndex map[string]int32
	itemRank  []int32 // position of each item's id in ascending id order
	users     []float32
	userIndex map[string]int32
	cold      []float32 // the cold-start query vector
	pool      sync.Pool // *scratch
}

// Items is the number of items in the catalogue.
func (m *Model) Items() int { return len(m.itemIDs) }

// Users is the number of users with their own vector (0 without users.npy).
func (m *Model) Users() int { return len(m.userIndex) }

// Dim is the dimension of the vectors.
func (m *Model) Dim() int { return m.dim }

// Scoring is the model's scoring, Dot or Cosine.
func (m *Model) Scoring() Scoring { return m.scoring }

// Close releases nothing: a Model holds only memory. It exists so that a
// Model satisfies interfaces that backends with connections implement, and
// it is safe to call more than once or while requests run.
func (m *Model) Close() error { return nil }
