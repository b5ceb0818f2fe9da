package prefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"howett.net/plist"
)

// bplistWriter builds binary property lists object by object, so that tests
// can make what no encoder writes: objects referenced many times, cycles,
// references out of range. References are 2 bytes, offsets 4.
type bplistWriter struct {
	objs [][]byte
}

// add appends an object's bytes and returns its number.
func (w *bplistWriter) add(obj []byte) int {
	w.objs = append(w.objs, obj)
	return len(w.objs) - 1
}

// marker is an object's marker byte with its length, using a following
// integer object when the length does not fit in 4 bits.
func marker(kind byte, n int) []byte {
	if n < 15 {
		return []byte{kind<<4 | byte(n)}
	}
	return binary.BigEndian.AppendUint32([]byte{kind<<4 | 0xF, 0x12}, uint32(n))
}

func (w *bplistWriter) ascii(s string) int {
	return w.add(append(marker(0x5, len(s)), s...))
}

func refs(b []byte, ids ...int) []byte {
	for _, id := range ids {
		b = binary.BigEndian.AppendUint16(b, uint16(id))
	}
	return b
}

func (w *bplistWriter) array(ids ...int) int {
	return w.add(refs(marker(0xA, len(ids)), ids...))
}

// dict adds a dictionary of alternating key and value objects.
func (w *bplistWriter) dict(kv ...int) int {
	var keys, vals []int
	for i := 0; i < len(kv); i += 2 {
		keys, vals = append(keys, kv[i]), append(vals, kv[i+1])
	}
	return w.add(refs(refs(marker(0xD, len(keys)), keys...), vals...))
}

// bytes lays out the file with top as its root object.
func (w *bplistWriter) bytes(top int) []byte {
	out := []byte("bplist00")
	var offsets []byte
	for _, o := range w.objs {
		offsets = binary.BigEndian.AppendUint32(offsets, uint32(len(out)))
		out = append(out, o...)
	}
	tableOff := len(out)
	out = append(out, offsets...)
	out = append(out, 0, 0, 0, 0, 0, 0, 4, 2)
	out = binary.BigEndian.AppendUint64(out, uint64(len(w.objs)))
	out = binary.BigEndian.AppendUint64(out, uint64(top))
	return binary.BigEndian.AppendUint64(out, uint64(tableOff))
}

// dagPlist is the attack: a preference dictionary whose Groups is an array
// listing one array width times, which lists another width times, levels
// deep, down to one string. It is a few bytes per level, and decodes to
// width^levels strings.
func dagPlist(levels, width int) []byte {
	w := &bplistWriter{}
	node := w.ascii("lab")
	for range levels {
		ids := make([]int, width)
		for i := range ids {
			ids[i] = node
		}
		node = w.array(ids...)
	}
	return w.bytes(w.dict(w.ascii("Groups"), node))
}

// allocated returns the bytes f allocated (runtime.MemStats.TotalAlloc):
// meaningful only in a test that does not run in parallel with others.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestSharedReferencesRefused reads binary plists whose shared references
// expand far beyond the limits, through Load, ApplyFile and ApplyData: each
// must be refused with a clear error before the decoder runs, allocating
// little. Not parallel: it measures the process's allocations. The cases
// go from mild to the attack itself (2^40 values from 0.3 KB), so that
// without the check the first one fails on memory before the others could
// exhaust it.
func TestSharedReferencesRefused(t *testing.T) {
	dir := t.TempDir()
	const allocBound = 1 << 20
	for _, c := range []struct{ levels, width int }{
		{2, 1200},
		{20, 2},
		{3, 255},
		{40, 2},
	} {
		data := dagPlist(c.levels, c.width)
		name := fmt.Sprintf("dag-%d-%d.plist", c.levels, c.width)
		path := writeFile(t, dir, name, data)
		want := []string{path + ": refused before decoding: the binary property list expands to more than 65536 values when decoded"}

		var err error
		if n := allocated(func() { _, err = Load(path) }); n > allocBound {
			t.Fatalf("Load(%s) (%d bytes, %d^%d values) allocated %d bytes, want at most %d; err = %.200v",
				name, len(data), c.width, c.levels, n, allocBound, err)
		}
		checkErr(t, err, want...)

		fs := newTestFlags()
		if n := allocated(func() { err = ApplyFile(fs.fs, path) }); n > allocBound {
			t.Fatalf("ApplyFile(%s) allocated %d bytes, want at most %d", name, n, allocBound)
		}
		checkErr(t, err, want...)
		err = ApplyData(newTestFlags().fs, name, data)
		checkErr(t, err, name+": refused before decoding: ")
		t.Logf("%s: %d bytes refused: %v", name, len(data), err)
	}
}

// TestSharedReferencesAccepted: sharing within the limits is normal (every
// encoder stores a repeated string once) and decodes as before.
func TestSharedReferencesAccepted(t *testing.T) {
	t.Parallel()
	w := &bplistWriter{}
	lab := w.ascii("lab")
	url := w.ascii("https://vigil.example.com/agent/")
	root := w.dict(
		w.ascii("NodeCommURL"), url,
		w.ascii("ServerPublicKey"), w.ascii(testKey),
		w.ascii("Groups"), w.array(lab, w.ascii("building-7")),
		w.ascii("Hostname"), lab,
		w.ascii("ScanExclude"), w.array(lab, w.ascii("/srv")),
	)
	data := w.bytes(root)
	a, err := Parse("shared.plist", data)
	if err != nil {
		t.Fatal(err)
	}
	if a.Hostname != "lab" || len(a.Groups) != 2 || a.Groups[0] != "lab" || len(a.ScanExclude) != 2 {
		t.Errorf("decoded %+v", a)
	}
	size, err := measureBinary(data)
	if err != nil {
		t.Fatal(err)
	}
	// The dictionary, 5 keys, 5 values and 4 array items; the strings'
	// bytes, "lab" three times.
	want := expanded{values: 15, depth: 2, bytes: 11 + 32 + 15 + 44 + 6 + 3 + 10 + 8 + 3 + 11 + 3 + 4}
	if size != want {
		t.Errorf("measured %+v, want %+v", size, want)
	}
	var decoded any
	if _, err := plist.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if got := measureValue(decoded); got != want {
		t.Errorf("the decoded value measures %+v, want %+v", got, want)
	}
}

// TestBinaryLimitsAndBrokenStructure covers each limit and each structural
// fault the check finds, with its message.
func TestBinaryLimitsAndBrokenStructure(t *testing.T) {
	t.Parallel()
	// deep: Groups nested 70 arrays deep, each holding one.
	deep := func(levels int) []byte {
		w := &bplistWriter{}
		node := w.ascii("lab")
		for range levels {
			node = w.array(node)
		}
		return w.bytes(w.dict(w.ascii("Groups"), node))
	}
	// big: one 60,000-byte string listed 100 times: few values, 6 MB.
	big := func() []byte {
		w := &bplistWriter{}
		s := w.ascii(strings.Repeat("x", 60000))
		ids := make([]int, 100)
		for i := range ids {
			ids[i] = s
		}
		return w.bytes(w.dict(w.ascii("Groups"), w.array(ids...)))
	}
	// selfRef: an array that lists itself; loop: two arrays listing each
	// other; outOfRange: a reference to object 9 of 3.
	selfRef := func() []byte {
		w := &bplistWriter{}
		key := w.ascii("Groups")
		arr := w.array(1)
		return w.bytes(w.dict(key, arr))
	}
	loop := func() []byte {
		w := &bplistWriter{}
		key := w.ascii("Groups")
		a := w.array(2)
		w.array(1)
		return w.bytes(w.dict(key, a))
	}
	outOfRange := func() []byte {
		w := &bplistWriter{}
		key := w.ascii("Groups")
		return w.bytes(w.dict(key, 9))
	}
	tooMany := func() []byte {
		w := &bplistWriter{}
		for range maxValues {
			w.add([]byte{0x09}) // true
		}
		return w.bytes(w.array(0, 1))
	}
	pastEnd := func() []byte {
		w := &bplistWriter{}
		w.add(marker(0x5, 5000)) // claims 5000 bytes that are not there
		return w.bytes(w.dict(0, 0))
	}
	notPlist := "x.plist: not a property list (XML or binary): binary: "
	cases := []struct {
		name string
		data []byte
		want string
	}{
		// The root dictionary is one level: 63 arrays in it make 64.
		{"depth 64", deep(63), "x.plist: key Groups: "}, // accepted by the check; Groups wants strings
		{"depth 65", deep(64), "x.plist: refused before decoding: the binary property list nests arrays and dictionaries more than 64 deep"},
		{"depth 10000", deep(10000), "x.plist: refused before decoding: the binary property list nests arrays and dictionaries more than 64 deep"},
		{"bytes", big(), "x.plist: refused before decoding: the binary property list expands to more than 4194304 bytes of strings and data"},
		{"self reference", selfRef(), notPlist + "object 1 contains itself (a reference cycle through object 1)"},
		{"cycle", loop(), notPlist + "object 1 contains itself (a reference cycle through object 2)"},
		{"out of range", outOfRange(), notPlist + "object 1 refers to object 9, but there are only 2 objects"},
		{"too many objects", tooMany(), "x.plist: refused before decoding: the binary property list has 65537 objects, more than the 65536 values allowed"},
		{"past the objects", pastEnd(), notPlist + "object 0 (5000 bytes of string or data at offset 8) runs past the objects"},
	}
	for _, c := range cases {
		_, err := Parse("x.plist", c.data)
		if err == nil {
			t.Errorf("%s: Parse accepted it", c.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "x.plist: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got\n%v\nwant\n%s", c.name, err, c.want)
		}
	}
}

// TestTrailerChecks breaks each trailer field of a good file.
func TestTrailerChecks(t *testing.T) {
	t.Parallel()
	good := mustEncode(t, minimal(), plist.BinaryFormat)
	tr := len(good) - 32
	set := func(at int, v ...byte) []byte {
		b := bytes.Clone(good)
		copy(b[at:], v)
		return b
	}
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"short", good[:39], "39 bytes is too short for a binary property list"},
		{"offset size 0", set(tr+6, 0), "trailer gives an offset size of 0 bytes, want 1 to 8"},
		{"ref size 9", set(tr+7, 9), "trailer gives an object reference size of 9 bytes, want 1 to 8"},
		{"objects", set(tr+8, u64(1<<40)...), "trailer claims 1099511627776 objects, but the offset table has room for"},
		{"root", set(tr+16, u64(1<<62)...), "trailer names object 4611686018427387904 as the root, but there are only"},
		{"table", set(tr+24, u64(3)...), "trailer puts the offset table at 3, outside the file's objects"},
	} {
		_, err := Parse("t.plist", c.data)
		if err == nil || !strings.HasPrefix(err.Error(), "t.plist: not a property list (XML or binary): binary: "+c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestXMLLimits: XML has no references, but its depth and number of values
// are held to the same limits, before the decoder recurses into it.
func TestXMLLimits(t *testing.T) {
	t.Parallel()
	nested := func(n int) []byte {
		return []byte(`<?xml version="1.0"?><plist version="1.0"><dict><key>Groups</key>` +
			strings.Repeat("<array>", n) + "<string>lab</string>" + strings.Repeat("</array>", n) + "</dict></plist>")
	}
	many := []byte(`<?xml version="1.0"?><plist version="1.0"><array>` + strings.Repeat("<true/>", maxValues) + "</array></plist>")
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"depth 64", nested(63), "x.plist: key Groups: "}, // with the root dictionary
		{"depth 65", nested(65), "x.plist: refused before decoding: the XML property list nests arrays and dictionaries more than 64 deep"},
		{"unclosed 100000", []byte(`<?xml version="1.0"?><plist>` + strings.Repeat("<array>", 100000)),
			"x.plist: refused before decoding: the XML property list nests arrays and dictionaries more than 64 deep"},
		{"values", many, "x.plist: refused before decoding: the XML property list holds more than 65536 values"},
		{"values at the limit", many[:len(many)-len("<true/></array></plist>")], "x.plist: not a property list (XML or binary): "},
		{"nested text format", []byte(strings.Repeat("(", 100000)), "x.plist: not a property list (XML or binary): neither an XML plist nor a binary plist"},
	} {
		_, err := Parse("x.plist", c.data)
		if err == nil || !strings.HasPrefix(err.Error(), "x.plist: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %.300v\nwant %q", c.name, err, c.want)
		}
	}
}

// TestPlistutilBinaryApplies has libplist's plistutil write a binary
// preference file for a part, which ApplyFile must read as before.
func TestPlistutilBinaryApplies(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("plistutil")
	if err != nil {
		t.Skip("plistutil not installed (Debian: apt-get install -y libplist-utils)")
	}
	dir := t.TempDir()
	src := writeFile(t, dir, "part.xml", xmlPlist(t, map[string]any{"Listen": ":8080", "Every": 90, "Verbose": true}))
	bin := filepath.Join(dir, "part.bin")
	if out, err := exec.Command(tool, "-i", src, "-o", bin, "-f", "bin").CombinedOutput(); err != nil {
		t.Fatalf("plistutil: %v\n%s", err, out)
	}
	fs := newTestFlags()
	if err := ApplyFile(fs.fs, bin); err != nil {
		t.Fatal(err)
	}
	if *fs.listen != ":8080" || fs.every.String() != "1m30s" || !*fs.verbose {
		t.Errorf("applied listen %q every %v verbose %v", *fs.listen, *fs.every, *fs.verbose)
	}
}

// FuzzMeasureBinary checks the pre-check against the decoder: whatever
// binary plist it lets through decodes to no more values, bytes and depth
// than it measured, and it never panics. Its seeds are the attack shapes.
func FuzzMeasureBinary(f *testing.F) {
	f.Add(dagPlist(3, 2))
	f.Add(dagPlist(40, 2))
	w := &bplistWriter{}
	lab := w.ascii("lab")
	f.Add(w.bytes(w.dict(w.ascii("Groups"), w.array(lab, lab, w.array(lab)))))
	w = &bplistWriter{}
	f.Add(w.bytes(w.dict(w.ascii("k"), w.array(2))))
	for _, v := range []any{minimal(), []any{"a", 1.5, true, map[string]any{"k": []byte{1}}}, "é€"} {
		data, err := plist.Marshal(v, plist.BinaryFormat)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte("bplist")) {
			data = append([]byte("bplist00"), data...)
		}
		size, err := measureBinary(data)
		var le *limitError
		if err != nil {
			if !errors.As(err, &le) && strings.ContainsAny(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			return
		}
		if size.values > maxValues || size.bytes > maxDecodedBytes || size.depth > maxDepth {
			t.Fatalf("measured %+v, beyond the limits, without an error", size)
		}
		var root any
		ok := func() (ok bool) {
			defer func() {
				if recover() != nil {
					ok = false
				}
			}()
			_, err := plist.Unmarshal(data, &root)
			return err == nil
		}()
		if !ok {
			return
		}
		got := measureValue(root)
		if got.values > size.values || got.bytes > size.bytes || got.depth > size.depth {
			t.Fatalf("decoded to %+v, more than the %+v measured", got, size)
		}
	})
}

// measureValue measures a decoded value as measureBinary does.
func measureValue(v any) expanded {
	e := expanded{values: 1}
	add := func(c expanded) {
		e.values += c.values
		e.bytes += c.bytes
		e.depth = max(e.depth, c.depth+1)
	}
	switch v := v.(type) {
	case string:
		e.bytes = uint64(len(v))
	case []byte:
		e.bytes = uint64(len(v))
	case []any:
		e.depth = 1
		for _, c := range v {
			add(measureValue(c))
		}
	case map[string]any:
		e.depth = 1
		for k, c := range v {
			add(measureValue(k))
			add(measureValue(c))
		}
	}
	return e
}
