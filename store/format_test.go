package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/modelgate/modelgate/store"
	"github.com/modelgate/modelgate/store/storetest"
)

// TestReadsDataDirV1 opens a data dir written by an earlier version of the
// store (testdata/v1, see storetest.CheckFixtureV1): existing data dirs must
// load unchanged.
func TestReadsDataDirV1(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "v1", store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // a copy: opening writes to the file
	if err := os.WriteFile(filepath.Join(dir, store.FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.CheckFixtureV1(t, db)
}
