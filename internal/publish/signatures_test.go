package publish

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// unsupportedDefs are definitions holding a signature of each kind the
// engine matches, a logical signature with a PCRE subsignature (loaded as
// ClamAV loads it, not matched) and a line ClamAV skips too (its minimum
// functionality level is above ClamAV 1.4's).
var unsupportedDefs = map[string][]byte{
	"main.hdb":  []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"),
	"daily.ndb": []byte("Vigil.Test.Body:0:*:4556494c\nVigil.Test.Future:0:*:41424344:250\n"),
	"daily.ldb": []byte("Vigil.Test.PCRE;Engine:81-255,Target:0;0&1;68656c6c6f20;0/hello [a-z]+/i\n"),
}

var unsupportedCount = repo.SignatureCount{Hash: 1, Body: 1, Logical: 1, ClamAV: 3, NotMatched: 1, Skipped: 1}

// TestDefinitionsSignatures stages, publishes and lists definitions
// whose signatures the engine does not all match: the counts recorded in
// the release's custom metadata at add time, what DefinitionsSignatures
// lists (Set.WriteDebug: as many "not matched" and "skipped" lines as
// counted, each with its file and line), and ClamAV's count, compared
// with clamscan's "Known viruses" for the same files.
func TestDefinitionsSignatures(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	src := t.TempDir()
	var paths []string
	for name, data := range unsupportedDefs {
		paths = append(paths, writeFile(t, src, name, data))
	}
	if _, err := r.DefinitionsSignatures(""); err == nil || !strings.Contains(err.Error(), "no definitions release is published or staged") {
		t.Errorf("an empty repository: %v", err)
	}
	a, err := r.AddDefinitionsFrom("7", paths, DefinitionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Signatures != unsupportedCount {
		t.Errorf("added: %+v, want %+v", a.Signatures, unsupportedCount)
	}
	check := func(version string, staged bool) {
		t.Helper()
		rs, err := r.DefinitionsSignatures(version)
		if err != nil {
			t.Fatal(err)
		}
		if rs.Staged != staged || rs.Target.Path != "definitions/7.tar" || rs.Target.Custom.Signatures == nil || *rs.Target.Custom.Signatures != unsupportedCount {
			t.Errorf("%q: staged %v, target %+v", version, rs.Staged, rs.Target)
		}
		if got := CountSignatures(rs.Set); got != unsupportedCount {
			t.Errorf("%q: loaded %+v", version, got)
		}
		var b strings.Builder
		rs.Set.WriteDebug(&b)
		listing := b.String()
		for _, want := range []string{
			"\nnot matched: daily.ldb:1: Vigil.Test.PCRE: ",
			"\nskipped: daily.ndb:2: Vigil.Test.Future: minimum functionality level 250 is above 216 (ClamAV skips it too)\n",
		} {
			if !strings.Contains(listing, want) {
				t.Errorf("%q: no %q in the listing:\n%s", version, want, listing)
			}
		}
		if n := strings.Count(listing, "\nnot matched: "); n != unsupportedCount.NotMatched {
			t.Errorf("%q: %d not matched listed, %d counted:\n%s", version, n, unsupportedCount.NotMatched, listing)
		}
		if n := strings.Count(listing, "\nskipped: "); n != unsupportedCount.Skipped {
			t.Errorf("%q: %d skipped listed, %d counted:\n%s", version, n, unsupportedCount.Skipped, listing)
		}
	}
	check("", true)
	check("7", true)
	s, err := r.Status()
	if err != nil || len(s.Staged) != 1 || s.Staged[0].Custom.Signatures == nil || *s.Staged[0].Custom.Signatures != unsupportedCount {
		t.Fatalf("status of the staged release: %+v %v", s, err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	check("7", false)
	check("", false)
	s, err = r.Status()
	if err != nil || len(s.Definitions) != 1 || s.Definitions[0].Custom.Signatures == nil || *s.Definitions[0].Custom.Signatures != unsupportedCount {
		t.Fatalf("status of the published release: %+v %v", s, err)
	}
	if _, err := r.DefinitionsSignatures("8"); err == nil || !strings.Contains(err.Error(), "definitions 8: not published or staged") {
		t.Errorf("an unknown release: %v", err)
	}

	// ClamAV counts the same.
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	sample := writeFile(t, t.TempDir(), "sample", []byte("nothing to find\n"))
	out, _ := exec.Command(clamscan, "-d", src, sample).CombinedOutput()
	m := regexp.MustCompile(`(?m)^Known viruses: (\d+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("clamscan:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n != unsupportedCount.ClamAV {
		t.Errorf("clamscan counts %d signatures, the release %d", n, unsupportedCount.ClamAV)
	}
}

// TestDefinitionsSignaturesBadRelease: a release whose files do not load
// (staged with AddDefinitionsData, which does not load them) and one
// whose content no longer matches its metadata are errors that say so.
func TestDefinitionsSignaturesBadRelease(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	if err := r.AddDefinitionsData("5", map[string][]byte{"main.hdb": []byte("not a hash line\n")}); err != nil {
		t.Fatal(err)
	}
	_, err := r.DefinitionsSignatures("5")
	if err == nil || !strings.Contains(err.Error(), "signatures: the release does not load: loading signatures from definitions 5 (definitions/5.tar): main.hdb:1: ") {
		t.Errorf("a release that does not load: %v", err)
	}
	if err := r.Publish(PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddDefinitionsData("6", defs1); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(r.Dir(), "staged", "targets", "definitions", "6.tar")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o600)
	if _, err := r.DefinitionsSignatures(""); err == nil || !strings.Contains(err.Error(), "definitions 6: "+p+" does not match its metadata") {
		t.Errorf("a changed bundle: %v", err)
	}
}
