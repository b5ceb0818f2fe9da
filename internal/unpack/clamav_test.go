package unpack

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/unpack/unpacktest"
)

// diffCase is a file scanned by clamscan with flags, and walked by Walk
// with the same settings.
type diffCase struct {
	name  string
	data  []byte
	flags string // clamscan flags, space-separated
}

// optionsFromFlags turns the clamscan flags used here into Options.
func optionsFromFlags(t *testing.T, flags string) Options {
	opts := DefaultOptions()
	for _, f := range strings.Fields(flags) {
		k, v, _ := strings.Cut(f, "=")
		num := func() int64 {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("flag %s: %v", f, err)
			}
			return n
		}
		switch k {
		case "--max-files":
			opts.Limits.MaxFiles = int(num())
		case "--max-recursion":
			opts.Limits.MaxRecursion = int(num())
		case "--max-filesize", "--max-scansize":
			n, err := ParseSize(v)
			if err != nil {
				t.Fatal(err)
			}
			if k == "--max-filesize" {
				opts.Limits.MaxFileSize = n
			} else {
				opts.Limits.MaxScanSize = n
			}
		case "--alert-exceeds-max":
			opts.AlertExceedsMax = true
		case "--alert-encrypted":
			opts.AlertEncrypted = true
		case "--heuristic-alerts":
			opts.NoHeuristicAlerts = v == "no"
		default:
			t.Fatalf("unknown flag %s", f)
		}
	}
	return opts
}

// nestGz wraps data in n gzip layers.
func nestGz(data []byte, n int) []byte {
	for range n {
		data = unpacktest.Gzip(data)
	}
	return data
}

func nestZip(t testing.TB, data []byte, n int) []byte {
	for i := range n {
		data = unpacktest.Zip(t, unpacktest.ZipEntry{Name: fmt.Sprintf("level%d", n-i), Data: data, Method: zip.Deflate})
	}
	return data
}

// diffCorpus builds the differential test's files. The marker sits in
// compressed data wherever a case is about reaching a member, so that
// only opening the archive finds it.
func diffCorpus(t *testing.T) []diffCase {
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return b
	}
	zipDeflate := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "dir/evil.txt", Data: markerText, Method: zip.Deflate})
	var cs []diffCase
	add := func(name string, data []byte, flags string) {
		// Only these two show the marker in their own bytes: in every
		// other file only opening it can find it.
		raw := name == "plain" || name == "zip-stored" || name == "ignored-mp3"
		if !raw && bytes.Contains(data, []byte(marker)) {
			t.Fatalf("%s: the marker is in the file's own bytes", name)
		}
		cs = append(cs, diffCase{name: name, data: data, flags: flags})
	}
	// Compressible filler, so the marker is nowhere in
	// the compressed bytes (random data would be stored as is).
	var filler bytes.Buffer
	for i := 0; filler.Len() < 200<<10; i++ {
		fmt.Fprintf(&filler, "line %d of the filler text, %x\n", i, i*i)
	}
	long := append(append([]byte(nil), markerText...), filler.Bytes()...)
	// Formats and their nesting.
	add("plain", markerText, "")
	add("zip-stored", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a", Data: markerText, Method: zip.Store}), "")
	add("zip-deflate", zipDeflate, "")
	add("zip-bzip2", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a", Data: markerText, Method: zipMethodBzip2, Raw: markerBz2}), "")
	add("zip-clean", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a", Data: []byte("nothing here, nothing at all"), Method: zip.Deflate}), "")
	add("gz", unpacktest.Gzip(markerText), "")
	add("gz-multimember", append(unpacktest.Gzip([]byte("first member, clean")), unpacktest.Gzip(markerText)...), "")
	add("bz2", markerBz2, "")
	add("xz", unpacktest.Xz(t, long), "") // small inputs are stored as is in xz
	add("xz-trailing-garbage", append(unpacktest.Xz(t, long), "garbage after the stream"...), "")
	add("tar-ustar", unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "a", Data: markerText})), "")
	add("tar-gnu-longname", unpacktest.Tar(t, tar.FormatGNU, unpacktest.TarEntry{Name: strings.Repeat("long/", 30) + "x.zip", Data: zipDeflate}), "")
	add("tar-pax", unpacktest.Tar(t, tar.FormatPAX, unpacktest.TarEntry{Name: "caf\u00e9.zip", Data: zipDeflate}), "")
	v7 := unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "in.zip", Data: zipDeflate})
	copy(v7[257:265], make([]byte, 8))
	fixTarChecksum(v7[:512])
	add("tar-v7", v7, "")
	add("zip-in-tar.gz-in-xz", unpacktest.Xz(t, unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "z.zip", Data: zipDeflate}))), "")
	add("gz-in-zip-in-tar.bz2", unpacktest.Bzip2(t, unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "i.zip", Data: unpacktest.Zip(t, unpacktest.ZipEntry{Name: "m.gz", Data: unpacktest.Gzip(markerText), Method: zip.Store})})), "")
	add("sfx", append(append([]byte("MZ\x90\x00"), noise(3000)...), zipDeflate...), "")
	add("sfx-text", append(bytes.Repeat([]byte("just some text\n"), 20), zipDeflate...), "")
	// A file ClamAV types HTML is not searched for embedded zips.
	add("sfx-html", append([]byte("<html><body>"+strings.Repeat("some page text\n", 80)+"</body></html>\n"), zipDeflate...), "")
	// A zip that is an OOXML document to ClamAV's typing is opened as a zip.
	add("ooxml-docx", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "[Content_Types].xml", Data: []byte("<Types/>"), Method: zip.Deflate}, unpacktest.ZipEntry{Name: "word/document.xml", Data: markerText, Method: zip.Deflate}), "")
	var dd bytes.Buffer // archive/zip's streaming writer: sizes in a data descriptor
	zw := zip.NewWriter(&dd)
	w, _ := zw.Create("dd.txt")
	w.Write(long)
	zw.Close()
	add("zip-data-descriptor", dd.Bytes(), "")
	add("sfx-data-descriptor", append([]byte("MZ\x90\x00 stub"), dd.Bytes()...), "")
	// A stored entry whose sizes disagree (csize < usize): ClamAV tries
	// its data as deflate.
	quirk := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "q", Data: long, Method: zip.Deflate})
	lh := bytes.Index(quirk, []byte("PK\x03\x04"))
	ch := bytes.Index(quirk, []byte("PK\x01\x02"))
	putLE16(quirk[lh+8:], zip.Store)
	putLE16(quirk[ch+10:], zip.Store)
	add("zip-stored-but-deflated", quirk, "")
	// A tar whose first header is damaged: ClamAV skips block by block
	// to the next valid header.
	badTar := unpacktest.Tar(t, tar.FormatUSTAR, unpacktest.TarEntry{Name: "first", Data: bytes.Repeat([]byte("x"), 3000)}, unpacktest.TarEntry{Name: "second.gz", Data: unpacktest.Gzip(long)})
	badTar[148] ^= 1
	add("tar-bad-first-header", badTar, "")
	// Types ClamAV never scans: not even their own bytes.
	mp3 := append([]byte("ID3\x03\x00\x00\x00\x00\x00\x00"), markerText...)
	add("ignored-mp3", mp3, "")
	add("ignored-mp3-in-zip", unpacktest.Zip(t, unpacktest.ZipEntry{Name: "song.mp3", Data: mp3, Method: zip.Deflate}), "")
	add("ignored-sqlite-with-zip", append(append([]byte("SQLite format 3\x00"), make([]byte, 100)...), zipDeflate...), "")
	add("zip-no-central-directory", zipDeflate[:bytes.Index(zipDeflate, []byte("PK\x01\x02"))], "")
	add("zip-overlapping", overlapBomb(t, 10), "")
	add("zip-overlapping-no-heuristics", overlapBomb(t, 10), "--heuristic-alerts=no")
	corrupt := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "c", Data: long, Method: zip.Deflate})
	mid := bytes.Index(corrupt, []byte("PK\x01\x02")) / 2
	for i := mid; i < mid+64; i++ {
		corrupt[i] ^= 0x55
	}
	add("zip-corrupt-deflate", corrupt, "")
	gz := unpacktest.Gzip(long)
	add("gz-truncated", gz[:len(gz)/2], "")
	x := unpacktest.Xz(t, long)
	add("xz-truncated", x[:len(x)*3/4], "")
	var bigFiller bytes.Buffer
	for i := 0; bigFiller.Len() < 2<<20; i++ {
		fmt.Fprintf(&bigFiller, "line %d of the filler text, %x\n", i, i*i)
	}
	bz := unpacktest.Bzip2(t, append(append([]byte(nil), markerText...), bigFiller.Bytes()...))
	add("bz2-truncated", bz[:len(bz)*3/4], "")
	// A bzip2 stream cut in its second block: ClamAV scans the first
	// block's output in whole 8 KiB chunks, so a marker in the last
	// partial chunk of that block is not reached.
	for _, at := range []int{880000, 895000} {
		b := append([]byte(nil), bigFiller.Bytes()[:1000000]...)
		copy(b[at:], markerText)
		z := unpacktest.Bzip2(t, b)
		add(fmt.Sprintf("bz2-cut-marker-at-%d", at), z[:len(z)*95/100], "")
	}
	// Central entries all pointing at one local header: duplicates,
	// extracted once, no overlap alert.
	one := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "one", Data: long, Method: zip.Deflate})
	cdAt := bytes.Index(one, []byte("PK\x01\x02"))
	eocdAt := bytes.Index(one, []byte("PK\x05\x06"))
	cdEnt := one[cdAt:eocdAt]
	dupCD := append([]byte(nil), one[:cdAt]...)
	for range 10 {
		dupCD = append(dupCD, cdEnt...)
	}
	eocd := append([]byte(nil), one[eocdAt:]...)
	putLE16(eocd[8:], 10)
	putLE16(eocd[10:], 10)
	putLE32(eocd[12:], uint32(10*len(cdEnt)))
	add("zip-duplicate-central-entries", append(dupCD, eocd...), "")
	// Encryption.
	enc := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "secret", Data: markerText, Method: zip.Deflate, Encrypted: true}, unpacktest.ZipEntry{Name: "open", Data: []byte("clean and open text")})
	add("zip-encrypted", enc, "")
	add("zip-encrypted-alert", enc, "--alert-encrypted")
	encAndMarker := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "secret", Data: []byte("an encrypted secret entry"), Method: zip.Deflate, Encrypted: true}, unpacktest.ZipEntry{Name: "evil", Data: long, Method: zip.Deflate})
	add("zip-encrypted-and-marker", encAndMarker, "--alert-encrypted")
	// Recursion.
	for _, d := range []int{15, 16, 17, 18} {
		add(fmt.Sprintf("gz-depth-%d", d), nestGz(markerText, d), "")
		add(fmt.Sprintf("gz-depth-%d-alert", d), nestGz(markerText, d), "--alert-exceeds-max")
	}
	for _, d := range []int{15, 16, 17} {
		add(fmt.Sprintf("zip-depth-%d", d), nestZip(t, markerText, d), "")
	}
	for _, d := range []int{3, 4, 5} {
		add(fmt.Sprintf("gz-depth-%d-maxrec-5", d), nestGz(markerText, d), "--max-recursion=5")
		add(fmt.Sprintf("zip-depth-%d-maxrec-5-alert", d), nestZip(t, markerText, d), "--max-recursion=5 --alert-exceeds-max")
	}
	// Files.
	var ents []unpacktest.ZipEntry
	var tents []unpacktest.TarEntry
	for i := range 30 {
		data := []byte(fmt.Sprintf("member %d is clean", i))
		if i == 29 {
			data = markerText
		}
		ents = append(ents, unpacktest.ZipEntry{Name: fmt.Sprintf("m%02d", i), Data: data, Method: zip.Deflate})
		tents = append(tents, unpacktest.TarEntry{Name: fmt.Sprintf("m%02d", i), Data: data})
	}
	many := unpacktest.Zip(t, ents...)
	manyTar := unpacktest.Gzip(unpacktest.Tar(t, tar.FormatUSTAR, tents...))
	for _, n := range []int{29, 30, 31, 32} {
		add(fmt.Sprintf("zip-30-max-files-%d", n), many, fmt.Sprintf("--max-files=%d", n))
		add(fmt.Sprintf("zip-30-max-files-%d-alert", n), many, fmt.Sprintf("--max-files=%d --alert-exceeds-max", n))
		add(fmt.Sprintf("tar.gz-30-max-files-%d", n), manyTar, fmt.Sprintf("--max-files=%d", n))
		add(fmt.Sprintf("tar.gz-30-max-files-%d-alert", n), manyTar, fmt.Sprintf("--max-files=%d --alert-exceeds-max", n))
	}
	// Identical members: ClamAV scans the first, caches it as clean and
	// skips the others, which then take one file each from max-files.
	var inner []unpacktest.ZipEntry
	for i := range 20 {
		inner = append(inner, unpacktest.ZipEntry{Name: fmt.Sprintf("m%02d", i), Data: []byte(fmt.Sprintf("clean member %d of the inner zip", i)), Method: zip.Deflate})
	}
	innerZip := unpacktest.Zip(t, inner...)
	dup := unpacktest.Zip(t, unpacktest.ZipEntry{Name: "a.zip", Data: innerZip}, unpacktest.ZipEntry{Name: "b.zip", Data: innerZip}, unpacktest.ZipEntry{Name: "z.txt", Data: long, Method: zip.Deflate})
	for _, n := range []int{23, 24, 25, 45} {
		add(fmt.Sprintf("zip-identical-members-max-files-%d", n), dup, fmt.Sprintf("--max-files=%d", n))
	}
	// Sizes.
	bigEnd := append(bytes.Repeat([]byte("a"), 2<<20), markerText...)
	bigStart := append(append([]byte(nil), markerText...), bytes.Repeat([]byte("a"), 2<<20)...)
	for _, fl := range []string{"--max-filesize=1048576", "--max-filesize=3000000", "--max-filesize=1048576 --alert-exceeds-max"} {
		add("zip-big-marker-end "+fl, unpacktest.Zip(t, unpacktest.ZipEntry{Name: "big", Data: bigEnd, Method: zip.Deflate}), fl)
		add("zip-big-marker-start "+fl, unpacktest.Zip(t, unpacktest.ZipEntry{Name: "big", Data: bigStart, Method: zip.Deflate}), fl)
		add("gz-big-marker-start "+fl, unpacktest.Gzip(bigStart), fl)
		add("xz-big-marker-start "+fl, unpacktest.Xz(t, bigStart), fl)
	}
	// A deflate member is cut at the last whole 8 KiB chunk within
	// max-filesize: 999424 bytes for 1000000.
	for _, at := range []int{999300, 999500} {
		b := append([]byte(nil), bigFiller.Bytes()[:1100000]...)
		copy(b[at:], markerText)
		add(fmt.Sprintf("zip-cut-marker-at-%d", at), unpacktest.Zip(t, unpacktest.ZipEntry{Name: "big", Data: b, Method: zip.Deflate}), "--max-filesize=1000000")
	}
	// Sizes as clamscan's flags take them: suffixes, and 0 (4 GiB - 1).
	add("gz-big-marker-start --max-filesize=1m", unpacktest.Gzip(bigStart), "--max-filesize=1m")
	add("gz-big-marker-start --max-filesize=3M", unpacktest.Gzip(bigStart), "--max-filesize=3M")
	add("gz-big-marker-start --max-filesize=0", unpacktest.Gzip(bigStart), "--max-filesize=0 --max-scansize=0")
	add("zip-30-max-files-0", many, "--max-files=0")
	var three []unpacktest.ZipEntry
	for i := range 3 {
		data := bytes.Repeat([]byte("b"), 1<<20)
		if i == 2 {
			data = append(data, markerText...)
		}
		three = append(three, unpacktest.ZipEntry{Name: fmt.Sprintf("p%d", i), Data: data, Method: zip.Deflate})
	}
	threeZip := unpacktest.Zip(t, three...)
	for _, fl := range []string{"--max-scansize=2500000", "--max-scansize=4000000", "--max-scansize=2500000 --alert-exceeds-max"} {
		add("zip-3x1M "+fl, threeZip, fl)
		add("gz-big "+fl, unpacktest.Gzip(bigStart), fl)
	}
	return cs
}

var clamLine = regexp.MustCompile(`^(.*): (\S+) FOUND$`)

// TestClamscanDifferential scans a generated corpus of archives with the
// real clamscan and a marker signature, and checks that clamscan reports
// a file (and with which name) exactly when Walk yields an object of it
// holding the marker (or, with no marker, the last heuristic alert). With
// --allmatch, clamscan prints one line per object matched and then each
// alert name once: the counts and names must agree too.
func TestClamscanDifferential(t *testing.T) {
	t.Parallel()
	clam := testenv.NeedTool(t, "clamscan", "clamav")
	dir := t.TempDir()
	db := filepath.Join(dir, "marker.ndb")
	if err := os.WriteFile(db, []byte("Vigil.Test.Marker:0:*:"+hex.EncodeToString([]byte(marker))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := diffCorpus(t)
	byFlags := map[string][]int{}
	var order []string
	for i, c := range cases {
		if _, ok := byFlags[c.flags]; !ok {
			order = append(order, c.flags)
		}
		byFlags[c.flags] = append(byFlags[c.flags], i)
	}
	clamSays := make([]string, len(cases))  // default: the one line
	clamAll := make([][]string, len(cases)) // --allmatch: every line
	for g, flags := range order {
		gdir := filepath.Join(dir, fmt.Sprintf("g%02d", g))
		if err := os.Mkdir(gdir, 0o700); err != nil {
			t.Fatal(err)
		}
		paths := map[string]int{}
		var files []string
		for _, i := range byFlags[flags] {
			p := filepath.Join(gdir, strings.ReplaceAll(cases[i].name, " ", "_"))
			if err := os.WriteFile(p, cases[i].data, 0o600); err != nil {
				t.Fatal(err)
			}
			paths[p] = i
			files = append(files, p)
			clamSays[i] = "OK"
		}
		for _, allmatch := range []bool{false, true} {
			args := append([]string{"--no-summary", "-d", db}, strings.Fields(flags)...)
			if allmatch {
				args = append(args, "--allmatch")
			}
			out, err := exec.Command(clam, append(args, files...)...).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
				t.Fatalf("clamscan %s: %v\n%s", flags, err, out)
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				m := clamLine.FindStringSubmatch(sc.Text())
				if m == nil {
					continue
				}
				i, ok := paths[m[1]]
				if !ok {
					continue
				}
				name := strings.TrimSuffix(m[2], ".UNOFFICIAL")
				if allmatch {
					clamAll[i] = append(clamAll[i], name)
				} else {
					clamSays[i] = name
				}
			}
		}
	}
	for i, c := range cases {
		opts := optionsFromFlags(t, c.flags)
		for _, allmatch := range []bool{false, true} {
			var matched []string
			res, err := Walk(context.Background(), bytes.NewReader(c.data), int64(len(c.data)), c.name, opts, func(o *Object) error {
				b := make([]byte, o.Size)
				if _, err := o.R.ReadAt(b, 0); err != nil {
					return err
				}
				if !bytes.Contains(b, []byte(marker)) {
					return nil
				}
				matched = append(matched, "Vigil.Test.Marker")
				if allmatch {
					return ErrDetected
				}
				return ErrStop
			})
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if allmatch {
				we := matched
				for _, a := range res.Alerts {
					we = append(we, a.Name)
				}
				if strings.Join(we, " ") != strings.Join(clamAll[i], " ") {
					t.Errorf("%s [%s --allmatch]: clamscan says %q, unpack says %q (limits %v)", c.name, c.flags, clamAll[i], we, res.Limits)
				} else {
					t.Logf("%s [%s --allmatch]: %q", c.name, c.flags, we)
				}
				continue
			}
			we := "OK"
			switch {
			case len(matched) > 0:
				we = matched[0]
			case len(res.Alerts) > 0:
				we = res.Alerts[len(res.Alerts)-1].Name
			}
			if we != clamSays[i] {
				t.Errorf("%s [%s]: clamscan says %s, unpack says %s (limits %v)", c.name, c.flags, clamSays[i], we, res.Limits)
			} else {
				t.Logf("%s [%s]: %s", c.name, c.flags, we)
			}
		}
	}
}
