package delta

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/repo"
)

// clamGen writes signature lines as ClamAV's database files hold them.
type clamGen struct {
	rng *rand.Rand
	id  int // the next signature id (ClamAV numbers signatures as it adds them)
}

var (
	platforms = []string{"Win", "Win", "Win", "Unix", "Doc", "Pdf", "Html", "Js", "Andr", "Osx", "Xls", "Email", "Multios"}
	kinds     = []string{"Trojan", "Trojan", "Malware", "Exploit", "Downloader", "Dropper", "Phishing", "Adware", "Coinminer", "Ransomware", "Packed", "Worm"}
	families  = func() []string {
		syll := []string{"ag", "ent", "zeu", "s", "emo", "tet", "qak", "bot", "lok", "i", "dar", "kg", "ate", "ur", "sni", "fy", "ic", "ed", "id", "ra", "mo", "fo", "ne", "xa"}
		rng := rand.New(rand.NewPCG(11, 12))
		var out []string
		for range 400 {
			var sb strings.Builder
			for range 2 + rng.IntN(3) {
				sb.WriteString(syll[rng.IntN(len(syll))])
			}
			s := sb.String()
			out = append(out, strings.ToUpper(s[:1])+s[1:])
		}
		return out
	}()
)

func (g *clamGen) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = digits[g.rng.IntN(16)]
	}
	return string(b)
}

// name is a signature name such as Win.Trojan.Emotet-7012345-0.
func (g *clamGen) name() string {
	g.id++
	return fmt.Sprintf("%s.%s.%s-%d-%d", platforms[g.rng.IntN(len(platforms))], kinds[g.rng.IntN(len(kinds))],
		families[g.rng.IntN(len(families))], 6000000+g.id, g.rng.IntN(2))
}

// line returns a new signature line for a file of kind ext.
func (g *clamGen) line(ext string) string {
	switch ext {
	case "hdb": // MD5:size:name
		return fmt.Sprintf("%s:%d:%s\n", g.hex(16), 1000+g.rng.IntN(4<<20), g.name())
	case "hsb": // SHA-256 (some SHA-1):size:name:flevel
		n := 32
		if g.rng.IntN(5) == 0 {
			n = 20
		}
		return fmt.Sprintf("%s:%d:%s:73\n", g.hex(n), 1000+g.rng.IntN(4<<20), g.name())
	case "mdb": // PE section size:MD5:name
		return fmt.Sprintf("%d:%s:%s\n", 512*(1+g.rng.IntN(2000)), g.hex(16), g.name())
	case "ndb": // name:target:offset:body
		offs := []string{"*", "0", "EP+0", "EOF-512", "SE1"}
		body := g.hex(8 + g.rng.IntN(24))
		switch g.rng.IntN(4) {
		case 1:
			body += "??" + g.hex(6)
		case 2:
			body += fmt.Sprintf("{%d-%d}", g.rng.IntN(8), 8+g.rng.IntN(32)) + g.hex(6)
		}
		return fmt.Sprintf("%s:%d:%s:%s\n", g.name(), g.rng.IntN(8), offs[g.rng.IntN(len(offs))], body)
	}
	// ldb: name;target description;logical expression;subsignatures
	n := 2 + g.rng.IntN(3)
	expr := make([]string, n)
	subs := make([]string, n)
	for i := range n {
		expr[i] = fmt.Sprint(i)
		subs[i] = g.hex(6 + g.rng.IntN(20))
	}
	return fmt.Sprintf("%s;Engine:81-255,Target:%d;%s;%s\n", g.name(), g.rng.IntN(8), strings.Join(expr, "&"), strings.Join(subs, ";"))
}

// clamFiles is the layout of the benchmark's database: file name and
// share of its signatures, as in ClamAV's main and daily databases.
var clamFiles = []struct {
	name  string
	share float64
}{
	{"main.hsb", 0.40}, {"main.hdb", 0.20}, {"main.mdb", 0.15}, {"main.ndb", 0.07}, {"main.ldb", 0.03},
	{"daily.hsb", 0.05}, {"daily.hdb", 0.04}, {"daily.mdb", 0.02}, {"daily.ndb", 0.02}, {"daily.ldb", 0.02},
}

// clamDB returns a database of n signatures, each file's lines.
func clamDB(g *clamGen, n int) map[string][]string {
	db := map[string][]string{}
	for _, f := range clamFiles {
		ext := f.name[strings.LastIndexByte(f.name, '.')+1:]
		lines := make([]string, int(f.share*float64(n)))
		for i := range lines {
			lines[i] = g.line(ext)
		}
		db[f.name] = lines
	}
	return db
}

// clamChange returns the next release of db: changes signatures
// changed, a third each added, removed and replaced, at random places
// in files chosen in proportion to their size.
func clamChange(g *clamGen, db map[string][]string, changes int) map[string][]string {
	next := map[string][]string{}
	total := 0
	for name, lines := range db {
		next[name] = slices.Clone(lines)
		total += len(lines)
	}
	names := slices.Sorted(maps.Keys(next))
	for i := range changes {
		k := g.rng.IntN(total)
		name := names[0]
		for _, n := range names {
			if k < len(db[n]) {
				name = n
				break
			}
			k -= len(db[n])
		}
		lines := next[name]
		ext := name[strings.LastIndexByte(name, '.')+1:]
		at := g.rng.IntN(len(lines))
		switch i % 3 {
		case 0:
			lines = slices.Insert(lines, at, g.line(ext))
		case 1:
			lines = slices.Delete(lines, at, at+1)
		case 2:
			lines[at] = g.line(ext)
		}
		next[name] = lines
	}
	return next
}

func clamBytes(db map[string][]string) map[string][]byte {
	out := map[string][]byte{}
	for name, lines := range db {
		out[name] = []byte(strings.Join(lines, ""))
	}
	return out
}

// BenchmarkDelta2M measures a daily update of a database of 2,000,000
// signatures in ClamAV's formats (.hsb .hdb .mdb .ndb .ldb, main and
// daily) where the release changes 0.5 % of them (a third added, a third
// removed, a third replaced, spread over the files): the full release's
// bundle, the delta an agent downloads instead (and its share of the
// full release), the time to make it (publisher) and to apply it (agent).
// Run with
//
//	go test ./internal/delta -run '^$' -bench Delta2M -benchtime 3x
func BenchmarkDelta2M(b *testing.B) {
	const sigs, changes = 2_000_000, 10_000
	g := &clamGen{rng: rand.New(rand.NewPCG(2026, 12))}
	db := clamDB(g, sigs)
	base := clamBytes(db)
	result := clamBytes(clamChange(g, db, changes))
	full, err := repo.MakeBundle(result)
	if err != nil {
		b.Fatal(err)
	}
	d, err := Make(base, result)
	if err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(len(full)), "full-B")
		b.ReportMetric(float64(len(d)), "delta-B")
		b.ReportMetric(100*float64(len(d))/float64(len(full)), "delta-%")
	}
	b.Run("Make", func(b *testing.B) {
		for b.Loop() {
			if d, err = Make(base, result); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("Apply", func(b *testing.B) {
		var got map[string][]byte
		for b.Loop() {
			if got, err = Apply(d, base); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		check, err := repo.MakeBundle(got)
		if err != nil || !bytes.Equal(check, full) {
			b.Fatalf("the delta does not yield the full release: %v", err)
		}
		report(b)
	})
}

// TestDeltaSizeSmall is BenchmarkDelta2M's database at 1/100 of its
// size: the delta of a release changing 0.5 % of the signatures is at
// most 1 % of the full release, and applies.
func TestDeltaSizeSmall(t *testing.T) {
	g := &clamGen{rng: rand.New(rand.NewPCG(2026, 12))}
	db := clamDB(g, 20_000)
	base := clamBytes(db)
	result := clamBytes(clamChange(g, db, 100))
	full, err := repo.MakeBundle(result)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, err := Make(base, result)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("full %d bytes, delta %d bytes (%.3f %%), made in %v", len(full), len(d), 100*float64(len(d))/float64(len(full)), time.Since(start))
	if len(d)*100 > len(full) {
		t.Errorf("delta %d bytes, more than 1 %% of the full release (%d bytes)", len(d), len(full))
	}
	got, err := Apply(d, base)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(got, result, bytes.Equal) {
		t.Fatal("Apply(Make(base, result), base) differs from result")
	}
}
