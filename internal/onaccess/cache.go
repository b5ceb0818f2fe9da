package onaccess

import "sync"

// ident is a file's place: one cache entry per file.
type ident struct{ dev, ino uint64 }

// version is what must not have changed for a cached verdict to hold.
type version struct {
	size, mtime, ctime int64
	release            string
}

// entry is a cache entry. A tombstone (dead) records that the file was
// written at generation gen: a scan that started before it must not fill
// the cache with what it read.
type entry struct {
	id         ident
	ver        version
	verdict    Verdict
	dead       bool
	gen        uint64
	prev, next *entry
}

// cache is the verdict cache: bounded, least recently used entries evicted
// first, emptied when the definitions release changes.
type cache struct {
	mu      sync.Mutex
	max     int
	release string
	gen     uint64 // bumped by every invalidation
	m       map[ident]*entry
	lru     entry // sentinel: lru.next is the most recently used
}

func newCache(max int, release string) *cache {
	c := &cache{max: max, release: release, m: make(map[ident]*entry)}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

func (c *cache) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *cache) pushFront(e *entry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

// get returns the cached verdict of the file st under the current release,
// the key a scan's verdict is to be filled with and the generation the
// scan starts at.
func (c *cache) get(st Stat) (v Verdict, hit bool, ver version, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ver = version{size: st.Size, mtime: st.Mtime, ctime: st.Ctime, release: c.release}
	if e, ok := c.m[ident{st.Dev, st.Ino}]; ok && !e.dead && e.ver == ver {
		c.unlink(e)
		c.pushFront(e)
		return e.verdict, true, ver, c.gen
	}
	return Verdict{}, false, ver, c.gen
}

// fill caches the verdict of a scan of st that started at generation gen
// under ver.release, unless the release has changed or the file was
// written since.
func (c *cache) fill(st Stat, ver version, gen uint64, v Verdict) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ver.release != c.release {
		return false
	}
	id := ident{st.Dev, st.Ino}
	if e, ok := c.m[id]; ok {
		if e.dead && e.gen > gen {
			return false
		}
		e.ver, e.verdict, e.dead = ver, v, false
		c.unlink(e)
		c.pushFront(e)
		return true
	}
	c.insert(&entry{id: id, ver: ver, verdict: v})
	return true
}

func (c *cache) insert(e *entry) {
	if len(c.m) >= c.max {
		old := c.lru.prev
		c.unlink(old)
		delete(c.m, old.id)
	}
	c.m[e.id] = e
	c.pushFront(e)
}

// invalidate forgets the verdict of the file at (dev, ino), and keeps
// scans in progress from caching what they read.
func (c *cache) invalidate(dev, ino uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	id := ident{dev, ino}
	if e, ok := c.m[id]; ok {
		e.dead, e.gen, e.verdict = true, c.gen, Verdict{}
		c.unlink(e)
		c.pushFront(e)
		return
	}
	c.insert(&entry{id: id, dead: true, gen: c.gen})
}

// setRelease empties the cache when the release changes, and reports
// whether it did.
func (c *cache) setRelease(r string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r == c.release {
		return false
	}
	c.release = r
	c.gen++
	clear(c.m)
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return true
}

func (c *cache) currentRelease() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.release
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
