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

// Replicas change a record by compare-and-set: concurrent writers through
// different handles never lose an update. (storetest states the rest of
// Update's contract, through one handle.)
func TestUpdateIsCompareAndSetAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	replicas := []*Store{openStore(t, srv.URL(), onlineOpts()), openStore(t, srv.URL(), onlineOpts())}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for range each {
				if _, err := s.Update(ctx, store.Endpoints, "n", incr); err != nil {
					errs <- err
				}
			}
		}(replicas[w%len(replicas)])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, s := range replicas {
		if m, _ := s.List(ctx, store.Endpoints); string(m["n"]) != strconv.Itoa(writers*each) {
			t.Fatalf("after %d concurrent increments replica %d reads %q", writers*each, i, m["n"])
		}
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
