package redisstore

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/redistest"
	"github.com/modelgate/modelgate/store"
)

// incr is an Update mutation adding one to a decimal record.
func incr(cur []byte) ([]byte, error) {
	n, _ := strconv.Atoi(string(cur))
	return []byte(strconv.Itoa(n + 1)), nil
}

// Both stores change a record by compare-and-set: concurrent writers
// through different handles (replicas, for Redis) never lose an update,
// an error from the mutation changes nothing, and nil deletes.
func TestUpdateIsCompareAndSet(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ra, rb := openStore(t, srv.URL(), onlineOpts()), openStore(t, srv.URL(), onlineOpts())
	for _, tc := range []struct {
		name    string
		writers []appStore
	}{
		{"embedded", []appStore{db}},
		{"redis, two replicas", []appStore{ra, rb}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := tc.writers[0]
			got, err := s.Update(ctx, store.Endpoints, "n", func(cur []byte) ([]byte, error) {
				if cur != nil {
					t.Errorf("a new record read as %q", cur)
				}
				return []byte("0"), nil
			})
			if err != nil || string(got) != "0" {
				t.Fatalf("create: %q, %v", got, err)
			}
			const writers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(s appStore) {
					defer wg.Done()
					for i := 0; i < each; i++ {
						if _, err := s.Update(ctx, store.Endpoints, "n", incr); err != nil {
							errs <- err
						}
					}
				}(tc.writers[w%len(tc.writers)])
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if m, _ := s.List(ctx, store.Endpoints); string(m["n"]) != strconv.Itoa(writers*each) {
				t.Fatalf("after %d concurrent increments the record is %q", writers*each, m["n"])
			}

			refused := errors.New("refused")
			if _, err := s.Update(ctx, store.Endpoints, "n", func([]byte) ([]byte, error) { return nil, refused }); err != refused {
				t.Fatalf("the mutation's error came back as %v", err)
			}
			if m, _ := s.List(ctx, store.Endpoints); string(m["n"]) != strconv.Itoa(writers*each) {
				t.Fatalf("a refused change changed the record to %q", m["n"])
			}
			if got, err := s.Update(ctx, store.Endpoints, "n", func([]byte) ([]byte, error) { return nil, nil }); err != nil || got != nil {
				t.Fatalf("delete: %q, %v", got, err)
			}
			if m, _ := s.List(ctx, store.Endpoints); len(m) != 0 {
				t.Fatalf("after delete: %q", m)
			}
			if got, err := s.Update(ctx, store.Endpoints, "n", func([]byte) ([]byte, error) { return nil, nil }); err != nil || got != nil {
				t.Fatalf("deleting a missing record: %q, %v", got, err)
			}
		})
	}
}

// A write by another replica between Update's read and its write makes
// it run the mutation again on the newer value; endless interference ends
// in ErrContended with the other replica's writes intact.
func TestUpdateRetriesOnAnotherReplicasWrite(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	a, b := openStore(t, srv.URL(), onlineOpts()), openStore(t, srv.URL(), onlineOpts())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := b.Subscribe(sctx)
	time.Sleep(50 * time.Millisecond) // let the subscription reach the server
	for len(changed) > 0 {
		<-changed
	}

	var seen []string
	got, err := a.Update(ctx, store.Endpoints, "home", func(cur []byte) ([]byte, error) {
		seen = append(seen, string(cur))
		if len(seen) == 1 {
			if err := b.Put(ctx, store.Endpoints, "home", []byte("b")); err != nil {
				t.Fatal(err)
			}
		}
		return append(cur, 'a'), nil
	})
	if err != nil || string(got) != "ba" {
		t.Fatalf("Update = %q, %v; want \"ba\"", got, err)
	}
	if len(seen) != 2 || seen[0] != "" || seen[1] != "b" {
		t.Fatalf("the mutation saw %q; want the empty record, then the other replica's \"b\"", seen)
	}
	select {
	case <-changed:
	case <-time.After(2 * time.Second):
		t.Fatal("no change signal after an Update")
	}

	n := 0
	_, err = a.Update(ctx, store.Endpoints, "home", func(cur []byte) ([]byte, error) {
		n++
		if _, err := b.Update(ctx, store.Endpoints, "home", incr); err != nil {
			t.Fatal(err)
		}
		return []byte("lost"), nil
	})
	if !errors.Is(err, ErrContended) || n != maxUpdateAttempts {
		t.Fatalf("under endless interference: %v after %d attempts", err, n)
	}
	if m, _ := b.List(ctx, store.Endpoints); string(m["home"]) != strconv.Itoa(maxUpdateAttempts) {
		t.Fatalf("the record is %q; want the other replica's %d increments", m["home"], maxUpdateAttempts)
	}
}
