package simulate

import (
	"testing"

	"github.com/immeter/immeter/schemas"
)

func TestStreamDecodesAndMix(t *testing.T) {
	s, err := New(Config{Apps: 1000, Users: 100000, Seed: 1, Duplicates: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200000
	types := map[schemas.EventType]int{}
	type appUser struct {
		app  uint32
		user string
	}
	users := map[appUser]bool{}
	var buf []byte
	for range n {
		app, v := s.Next(buf[:0])
		buf = v
		e, err := schemas.DecodeEvent(v)
		if err != nil {
			t.Fatalf("unexpected error for %s: %v", v, err)
		}
		if e.App != app {
			t.Fatalf("unexpected app; got %d; want %d", app, e.App)
		}
		types[e.Type]++
		if e.User != "" {
			users[appUser{e.App, e.User}] = true
		}
	}
	f := func(typ schemas.EventType, lo, hi float64) {
		t.Helper()
		if share := float64(types[typ]) / n; share < lo || share > hi {
			t.Fatalf("unexpected share of %s; got %.3f; want %.2f..%.2f", typ, share, lo, hi)
		}
	}
	f(schemas.Message, 0.59, 0.61)
	f(schemas.Login, 0.34, 0.36)
	if len(users) < 20000 || len(users) > 100000 {
		t.Fatalf("unexpected distinct users; got %d", len(users))
	}
	t.Logf("types %v, distinct users %d", types, len(users))
}

func TestStreamIsReproducible(t *testing.T) {
	a, _ := New(Config{Apps: 100, Users: 1000, Seed: 7})
	b, _ := New(Config{Apps: 100, Users: 1000, Seed: 7})
	for i := range 1000 {
		_, x := a.Next(nil)
		_, y := b.Next(nil)
		if string(x) != string(y) {
			t.Fatalf("event %d differs; got %s; want %s", i, y, x)
		}
	}
}
