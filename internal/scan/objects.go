package scan

import (
	"context"
	"crypto/md5"
	"io"
	"strings"

	"github.com/vigil-fleet/vigil/internal/unpack"
)

// objectScan matches every object unpack.Walk yields for one file, as
// clamscan scans a file: the archives and compressed streams in it, their
// members, the file itself; each object's raw bytes and the normalized
// copies ClamAV makes of text and HTML (match, textpass.go). It decides
// what is reported for the file:
//
//   - without AllMatch, the first detection (clamscan stops at the first
//     signature that matches); with AllMatch, every signature of every
//     object, one name per match, as clamscan prints one line per match;
//   - a detection in an object that is on the allow list (.fp, .sfp), or
//     inside one, is dropped, as ClamAV's cli_check_fp checks every layer
//     of the recursion stack when a signature matches, and the scan goes
//     on;
//   - the alerts of the walk (limits, encryption...), when no signature
//     matched, or after the signatures with AllMatch.
//
// Objects arrive in ClamAV's order, an archive's members before the
// archive itself, so when an object matches, the archives holding it have
// not been seen yet. With an allow list, a detection below the file
// itself is therefore kept pending, and the walk goes on (returning
// unpack.ErrDetected) until its containers are seen: the first object
// after it that is shallower is its container (Walk is depth first),
// then that one's container, and so on up to the file. A zip found
// embedded in an object (a self-extracting archive) comes after that
// object: its members' containers are the objects seen before them
// (recent). An object whose detection was dropped is then clean to
// ClamAV, which caches it as such: a copy of it later in the file is not
// detected either (ClamAV's cache lasts the whole run; this one, the
// file).
type objectScan struct {
	ctx      context.Context
	e        *Engine
	m        *matcher
	allMatch bool
	allow    bool // the engine has an allow list

	pending  []pendingDetection
	recent   []seenObject // objects seen, shallower to deeper: possible containers of what comes next
	allowed  []seenObject // objects on the allow list
	rootSeen bool
	// dropped holds the objects whose detection the allow list dropped,
	// by MD5 and size: ClamAV then takes them for clean and caches them
	// so (clean_cache_add, unless something in the file was detected
	// before), and a copy met later in the file is not scanned again.
	dropped map[objectKey]bool
}

type objectKey struct {
	sum  [md5.Size]byte
	size int64
}

// pendingDetection is a detection whose containers may not all have been
// seen; floor is the depth of the shallowest one seen so far (0: all
// seen).
type pendingDetection struct {
	names      []string
	path       string
	floor      int
	suppressed bool
	key        objectKey
	cacheable  bool // nothing was detected in the file before it
}

type seenObject struct {
	path    string
	depth   int
	allowed bool
}

// contains reports whether the object at path outer may hold the one at
// path inner: the same path (a decompressed stream is named as its
// file), or a member path below it.
func contains(outer, inner string) bool {
	return inner == outer || strings.HasPrefix(inner, outer+"!")
}

// object is the callback of unpack.Walk.
func (s *objectScan) object(o *unpack.Object) error {
	allowed := false
	if s.allow {
		allowed = s.e.objs.allowed(o.R, o.Size)
		if allowed {
			s.allowed = append(s.allowed, seenObject{path: o.Path, depth: o.Depth, allowed: true})
		}
	}
	// o is the container of the pending detections deeper than it.
	for i := range s.pending {
		p := &s.pending[i]
		if o.Depth < p.floor {
			if allowed && contains(o.Path, p.path) && !p.suppressed {
				p.suppressed = true
				if p.cacheable {
					s.drop(p.key)
				}
			}
			p.floor = o.Depth
		}
	}
	if o.Depth == 0 {
		s.rootSeen = true
	}
	for len(s.recent) > 0 && s.recent[len(s.recent)-1].depth >= o.Depth {
		s.recent = s.recent[:len(s.recent)-1]
	}
	if !s.allMatch && s.confirmed() {
		// A detection inside o, now known not to be allowed: clamscan
		// stops there, before o's own bytes.
		return unpack.ErrStop
	}
	names, err := s.match(o)
	if err != nil {
		return err
	}
	in := s.recent
	s.recent = append(s.recent, seenObject{path: o.Path, depth: o.Depth, allowed: allowed})
	if len(names) == 0 {
		return nil
	}
	var key objectKey
	cacheable := false
	if s.allow {
		var ok bool
		if key, ok = keyOf(o.R, o.Size); ok {
			if s.dropped[key] {
				return nil // a copy of an object ClamAV cached as clean
			}
			cacheable = !s.detected()
		}
	}
	suppressed := allowed
	for _, r := range in {
		if r.allowed && contains(r.path, o.Path) {
			suppressed = true
		}
	}
	if suppressed {
		// ClamAV drops the detection and goes on, as if nothing had
		// matched.
		if cacheable {
			s.drop(key)
		}
		return nil
	}
	floor := o.Depth
	if s.rootSeen {
		floor = 0 // every container already seen (an embedded zip's member)
	}
	s.pending = append(s.pending, pendingDetection{names: names, path: o.Path, floor: floor, key: key, cacheable: cacheable})
	if !s.allMatch && (floor == 0 || !s.allow) {
		return unpack.ErrStop
	}
	return unpack.ErrDetected
}

// drop records an object whose detection the allow list dropped.
func (s *objectScan) drop(k objectKey) {
	if s.dropped == nil {
		s.dropped = map[objectKey]bool{}
	}
	s.dropped[k] = true
}

// detected reports whether a detection not (yet) dropped was made in the
// file.
func (s *objectScan) detected() bool {
	for _, p := range s.pending {
		if !p.suppressed {
			return true
		}
	}
	return false
}

// keyOf is an object's MD5 and size.
func keyOf(r io.ReaderAt, size int64) (objectKey, bool) {
	h := md5.New()
	if n, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil || n != size {
		return objectKey{}, false
	}
	k := objectKey{size: size}
	h.Sum(k.sum[:0])
	return k, true
}

// confirmed reports whether a detection is known to stand.
func (s *objectScan) confirmed() bool {
	for _, p := range s.pending {
		if p.floor == 0 && !p.suppressed {
			return true
		}
	}
	return false
}

// report is what clamscan prints for the file, given the walk's result
// and the file itself (r, size: for an alert on a file Walk did not
// open, whose allow-list status is then checked here).
func (s *objectScan) report(res unpack.Result, r io.ReaderAt, size int64) []string {
	var names []string
	for _, p := range s.pending {
		if p.suppressed {
			continue
		}
		if !s.allMatch {
			return p.names[:1]
		}
		names = append(names, p.names...)
	}
	if len(res.Alerts) == 0 {
		return names
	}
	var alerts []string
	for _, a := range res.Alerts {
		switch {
		case res.Objects == 0 && a.Name == unpack.AlertMaxFileSize:
			// A file over max-filesize: ClamAV raises the alert before
			// mapping the file (cl_scandesc_callback), so no allow list
			// applies to it.
		case s.alertAllowed(a):
			continue
		case s.allow && res.Objects == 0 && s.e.objs.allowed(r, size):
			// Nothing yielded (the file over max-scansize): the file is
			// the only layer.
			continue
		}
		alerts = append(alerts, a.Name)
	}
	if len(alerts) == 0 {
		return names
	}
	if !s.allMatch {
		return alerts[len(alerts)-1:]
	}
	return append(names, alerts...)
}

// alertAllowed reports whether an alert was raised in (or on) an object
// of the allow list. Alerts carry only the path of the object they were
// raised on, so containers are found by path.
func (s *objectScan) alertAllowed(a unpack.Alert) bool {
	for _, o := range s.allowed {
		if contains(o.path, a.Path) {
			return true
		}
	}
	return false
}

// scanObjects walks the file r (size bytes, named path) and returns the
// names to report, in order, and the walk's result.
func (e *Engine) scanObjects(ctx context.Context, m *matcher, r io.ReaderAt, size int64, path string, opts *Options) ([]string, unpack.Result, error) {
	s := &objectScan{ctx: ctx, e: e, m: m, allMatch: opts.AllMatch, allow: e.objs.hasAllow()}
	res, err := unpack.Walk(ctx, r, size, path, opts.unpackOptions(), s.object)
	if err != nil {
		return nil, res, err
	}
	return s.report(res, r, size), res, nil
}
