package onaccess

import (
	"fmt"
	"testing"
)

func TestCacheKey(t *testing.T) {
	t.Parallel()
	base := Stat{Dev: 1, Ino: 2, Size: 100, Mtime: 1000, Ctime: 2000}
	c := newCache(16, "r1")
	_, hit, ver, gen := c.get(base)
	if hit {
		t.Fatal("hit in an empty cache")
	}
	if !c.fill(base, ver, gen, Verdict{Infected: true, Signature: "Sig"}) {
		t.Fatal("fill refused")
	}
	if v, hit, _, _ := c.get(base); !hit || v != (Verdict{Infected: true, Signature: "Sig"}) {
		t.Fatalf("get after fill = %v, %v", v, hit)
	}
	for name, st := range map[string]Stat{
		"size":            {Dev: 1, Ino: 2, Size: 101, Mtime: 1000, Ctime: 2000},
		"mtime":           {Dev: 1, Ino: 2, Size: 100, Mtime: 1001, Ctime: 2000},
		"ctime":           {Dev: 1, Ino: 2, Size: 100, Mtime: 1000, Ctime: 2001},
		"inode":           {Dev: 1, Ino: 3, Size: 100, Mtime: 1000, Ctime: 2000},
		"device":          {Dev: 9, Ino: 2, Size: 100, Mtime: 1000, Ctime: 2000},
		"identity absent": {},
	} {
		if _, hit, _, _ := c.get(st); hit {
			t.Errorf("a changed %s hits", name)
		}
	}
	// A new release misses, and the old one's entries are gone.
	if !c.setRelease("r2") {
		t.Fatal("setRelease(r2) reported no change")
	}
	if _, hit, _, _ := c.get(base); hit {
		t.Error("hit after the release changed")
	}
	if c.setRelease("r2") {
		t.Error("setRelease with the same release reported a change")
	}
	if !c.setRelease("r1") {
		t.Fatal("setRelease(r1) reported no change")
	}
	if _, hit, _, _ := c.get(base); hit {
		t.Error("the first release's entry came back with it")
	}
}

// A scan that started under one release, or before the file was written,
// does not fill the cache with what it found.
func TestCacheStaleFills(t *testing.T) {
	t.Parallel()
	st := Stat{Dev: 1, Ino: 2, Size: 100, Mtime: 1000}
	c := newCache(16, "r1")

	_, _, ver, gen := c.get(st)
	c.setRelease("r2")
	if c.fill(st, ver, gen, Verdict{}) {
		t.Error("a scan under r1 filled the cache under r2")
	}
	if _, hit, _, _ := c.get(st); hit {
		t.Error("hit after a refused fill")
	}

	// Written while being scanned: the close-after-write comes before the
	// scan's end.
	_, _, ver, gen = c.get(st)
	c.invalidate(st.Dev, st.Ino)
	if c.fill(st, ver, gen, Verdict{}) {
		t.Error("a scan that started before the write filled the cache")
	}
	if _, hit, _, _ := c.get(st); hit {
		t.Error("hit after a refused fill")
	}
	// A scan that started after it does.
	_, _, ver, gen = c.get(st)
	if !c.fill(st, ver, gen, Verdict{Signature: "x"}) {
		t.Fatal("a scan after the write could not fill the cache")
	}
	if _, hit, _, _ := c.get(st); !hit {
		t.Error("miss after the fill")
	}
	// Invalidation of the file forgets it, whatever its new size and times.
	c.invalidate(st.Dev, st.Ino)
	if _, hit, _, _ := c.get(st); hit {
		t.Error("hit after invalidation")
	}
	// Invalidating another file leaves this one alone.
	_, _, ver, gen = c.get(st)
	c.fill(st, ver, gen, Verdict{})
	c.invalidate(st.Dev, st.Ino+1)
	if _, hit, _, _ := c.get(st); !hit {
		t.Error("invalidating another inode invalidated this one")
	}
}

// The cache holds at most its maximum, dropping the least recently used.
func TestCacheBounded(t *testing.T) {
	t.Parallel()
	const max = 4
	c := newCache(max, "r")
	st := func(i int) Stat { return Stat{Dev: 1, Ino: uint64(i), Size: int64(i)} }
	put := func(i int) {
		_, _, ver, gen := c.get(st(i))
		c.fill(st(i), ver, gen, Verdict{Signature: fmt.Sprint(i)})
	}
	for i := range max {
		put(i)
	}
	c.get(st(0)) // 0 is now the most recently used; 1 the least
	put(max)
	if n := c.len(); n != max {
		t.Fatalf("%d entries, want %d", n, max)
	}
	for i, want := range []bool{true, false, true, true, true} {
		v, hit, _, _ := c.get(st(i))
		if hit != want || (hit && v.Signature != fmt.Sprint(i)) {
			t.Errorf("entry %d: %v, hit %v; want hit %v", i, v, hit, want)
		}
	}
	for i := range 1000 {
		put(100 + i)
		if i%3 == 0 {
			c.invalidate(1, uint64(5000+i)) // tombstones count too
		}
	}
	if n := c.len(); n != max {
		t.Fatalf("%d entries after 1000 more, want %d", n, max)
	}
}
