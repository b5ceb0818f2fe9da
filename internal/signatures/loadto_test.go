package signatures

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// collector is a Sink that keeps copies of what it is given, as a Sink
// must (the signature passed is reused).
type collector struct {
	hashes []HashSig
	bodies []BodySig
	failAt int // fail the failAt-th signature (from 1); 0: never
	n      int
}

func (c *collector) fail() error {
	c.n++
	if c.n == c.failAt {
		return errors.New("sink full")
	}
	return nil
}

func (c *collector) AddHash(h *HashSig) error {
	if err := c.fail(); err != nil {
		return err
	}
	cp := *h
	cp.Name = strings.Clone(h.Name)
	cp.Hash = bytes.Clone(h.Hash)
	c.hashes = append(c.hashes, cp)
	return nil
}

func (c *collector) AddBody(b *BodySig) error {
	if err := c.fail(); err != nil {
		return err
	}
	c.bodies = append(c.bodies, *b)
	return nil
}

// loadToDir is a directory with every kind LoadTo reports: hashes, bodies,
// section hashes, allow and ignore lists, logical signatures, skipped
// lines and ignored files.
var loadToDir = map[string]string{
	"a.hdb":  eicarMD5 + ":68:Eicar.Hash\n# comment\n" + md5hex("x") + ":1:X.Hash (Clam)\n" + md5hex("y") + ":1:Ignored.Hash\n" + md5hex("z") + ":*:Any.Size:73\n" + md5hex("w") + ":1:High.FL:999\n",
	"b.hsb":  eicarSHA + ":68:Eicar.SHA256\n" + strings.Repeat("ab", 20) + ":12:A.SHA1\n",
	"c.ndb":  "Body.A:0:*:41424344\nBody.Internal:13:*:41424344\nBody.B:0:EOF-10,5:4142??44{2-4}4546\nIgnored.Body:0:*:41424344\n",
	"d.mdb":  "1024:" + eicarMD5 + ":Section.A\n",
	"e.fp":   md5hex("clean") + ":5:Clean\n",
	"f.ldb":  "L.A;Target:0;0&1;414243;444546\n",
	"g.ign2": "Ignored.Hash\nIgnored.Body\n",
	"h.cdb":  "x\n",
	"n.txt":  "",
}

func TestLoadToGivesWhatLoadWithKeeps(t *testing.T) {
	t.Parallel()
	dir := writeCase(t, loadCase{files: loadToDir})
	want, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var c collector
	got, err := LoadTo(dir, LoadOptions{}, &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Hashes) != 5 || len(want.Bodies) != 2 {
		t.Fatalf("Load: %d hashes, %d bodies; want 5 and 2", len(want.Hashes), len(want.Bodies))
	}
	if !reflect.DeepEqual(c.hashes, want.Hashes) || !reflect.DeepEqual(c.bodies, want.Bodies) {
		t.Errorf("sink got\n%+v\n%+v\nLoad keeps\n%+v\n%+v", c.hashes, c.bodies, want.Hashes, want.Bodies)
	}
	if len(got.Hashes) != 0 || len(got.Bodies) != 0 {
		t.Errorf("LoadTo's Set keeps %d hashes and %d bodies", len(got.Hashes), len(got.Bodies))
	}
	if got.Len() != want.Len() || got.HashCount() != 5 || got.BodyCount() != 2 || got.ClamAVCount() != want.ClamAVCount() {
		t.Errorf("LoadTo counts %d (%d hash, %d body), ClamAV %d; Load %d, ClamAV %d",
			got.Len(), got.HashCount(), got.BodyCount(), got.ClamAVCount(), want.Len(), want.ClamAVCount())
	}
	for _, f := range []string{"Files", "SectionHashes", "Allowed", "Logical", "Ignores", "Skipped", "IgnoredFiles"} {
		g, w := reflect.ValueOf(got).Elem().FieldByName(f).Interface(), reflect.ValueOf(want).Elem().FieldByName(f).Interface()
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: LoadTo %+v, Load %+v", f, g, w)
		}
	}
	if len(got.Skipped) != 4 || len(got.SectionHashes) != 1 || len(got.Allowed) != 1 || len(got.Logical) != 1 {
		t.Errorf("skipped %+v, %d section hashes, %d allowed, %d logical", got.Skipped, len(got.SectionHashes), len(got.Allowed), len(got.Logical))
	}
	var gd, wd strings.Builder
	if err := got.WriteDebug(&gd); err != nil {
		t.Fatal(err)
	}
	if err := want.WriteDebug(&wd); err != nil {
		t.Fatal(err)
	}
	if gd.String() != wd.String() || !strings.Contains(gd.String(), "signatures: 5 hash, 2 body matched") {
		t.Errorf("debug: LoadTo\n%s\nLoad\n%s", gd.String(), wd.String())
	}
}

// A Set's names and skipped names are copies, not pieces of the line they
// came from (which would keep the whole line in memory).
func TestHashNamesAreNotLinePieces(t *testing.T) {
	t.Parallel()
	s, err := Parse("t.hdb", strings.NewReader(eicarMD5+":68:Eicar\n"+eicarMD5+":68:B:999\n"))
	if err != nil || len(s.Hashes) != 1 || len(s.Skipped) != 1 {
		t.Fatalf("Parse = %+v, %v", s, err)
	}
	if s.Hashes[0].Name != "Eicar" || s.Skipped[0].Name != "B" || cap(s.Hashes[0].Hash) != 16 {
		t.Errorf("hash %+v, skipped %+v", s.Hashes[0], s.Skipped[0])
	}
}

func TestLoadToSinkErrorStopsTheLoad(t *testing.T) {
	t.Parallel()
	dir := writeCase(t, loadCase{files: loadToDir})
	c := collector{failAt: 2}
	_, err := LoadTo(dir, LoadOptions{}, &c)
	var se *Error
	if !errors.As(err, &se) || se.File != "a.hdb" || se.Line != 3 || !strings.Contains(err.Error(), "sink full") {
		t.Errorf("error %v", err)
	}
	if len(c.hashes) != 1 || len(c.bodies) != 0 {
		t.Errorf("sink kept %d hashes, %d bodies after its error", len(c.hashes), len(c.bodies))
	}
	if _, err := LoadTo(dir, LoadOptions{}, nil); err == nil {
		t.Error("LoadTo with no sink: no error")
	}
}

// nopSink takes signatures and keeps nothing.
type nopSink struct{ hashes, bodies int }

func (s *nopSink) AddHash(*HashSig) error { s.hashes++; return nil }
func (s *nopSink) AddBody(*BodySig) error { s.bodies++; return nil }

// Streaming a hash file allocates a fixed amount whatever its number of
// lines: none per line (3.5 million lines in ClamAV's databases).
func TestStreamedHashLinesDoNotAllocate(t *testing.T) {
	var b strings.Builder
	const lines = 2000
	for i := range lines {
		fmt.Fprintf(&b, "%s:%d:Gen.Trojan.Hash-%07d-0\n", md5hex(fmt.Sprint(i)), 100+i, i)
	}
	for i := range lines / 4 {
		fmt.Fprintf(&b, "%s:*:Gen.Any.Hash-%07d-0:73\n", strings.Repeat(fmt.Sprintf("%02x", i%256), 32), i)
	}
	data := []byte(b.String())
	var sink nopSink
	allocs := testing.AllocsPerRun(5, func() {
		set := &Set{sink: &sinker{s: &sink}}
		if err := parseInto(set, "t.hsb", bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
	})
	if sink.hashes != 6*(lines+lines/4) {
		t.Fatalf("sink took %d hashes", sink.hashes)
	}
	if allocs > 20 {
		t.Errorf("%v allocations for %d hash lines; want a fixed few", allocs, lines+lines/4)
	}
	// The Set path keeps each hash: a name and a digest per line, no more.
	allocs = testing.AllocsPerRun(5, func() {
		if _, err := Parse("t.hsb", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	})
	if max := float64(2*(lines+lines/4) + 60); allocs > max {
		t.Errorf("Parse: %v allocations for %d hash lines; want at most %v", allocs, lines+lines/4, max)
	}
}
