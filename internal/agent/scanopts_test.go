package agent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// TestScanQuarantinesArchive: EICAR inside a zip inside a tar.gz, found
// by the agent's scan command with quarantine: the detection is reported
// on the archive (its path, SHA-256 and size), and the archive is what
// goes into quarantine and comes back.
func TestScanQuarantinesArchive(t *testing.T) {
	t.Parallel()
	a := scanAgent(t)
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, err := zw.Create("payload/eicar.com")
	must(t, err)
	w.Write([]byte(eicarTest))
	must(t, zw.Close())
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	must(t, tw.WriteHeader(&tar.Header{Name: "inner.zip", Mode: 0o644, Size: int64(zb.Len()), ModTime: time.Unix(1700000000, 0)}))
	tw.Write(zb.Bytes())
	must(t, tw.Close())
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write(tb.Bytes())
	must(t, gw.Close())

	home := t.TempDir()
	archive := filepath.Join(home, "downloads", "bundle.tar.gz")
	write(t, archive, gb.String(), 0o644)
	write(t, filepath.Join(home, "notes.txt"), "nothing here\n", 0o644)
	sum := sha256.Sum256(gb.Bytes())

	out := a.runScan(context.Background(), scanReq{Paths: []string{home}, Quarantine: true})
	if out.Status != command.StatusOK || !strings.Contains(out.Output, "scanned 2 files") || !strings.Contains(out.Output, "1 infected") || !strings.Contains(out.Output, "1 quarantined") {
		t.Fatalf("scan: %+v", out)
	}
	rep := savedReport(t, a)
	if len(rep.Detections) != 1 {
		t.Fatalf("detections %+v", rep.Detections)
	}
	d := rep.Detections[0]
	if d.Path != archive || d.Signature != "Eicar-Test-Signature" || d.SHA256 != hex.EncodeToString(sum[:]) || d.Quarantine == "" {
		t.Fatalf("detection %+v", d)
	}
	if _, err := os.Lstat(archive); !os.IsNotExist(err) {
		t.Fatalf("the archive is still in place: %v", err)
	}
	got, err := (Quarantine{Dir: a.p.QuarantineDirectory}).Restore(d.Quarantine)
	if err != nil || got != archive {
		t.Fatalf("Restore = %q, %v", got, err)
	}
	if b, err := os.ReadFile(archive); err != nil || !bytes.Equal(b, gb.Bytes()) {
		t.Fatalf("restored archive differs: %v", err)
	}
}

// TestScanOptions: the agent scans with clamscan's defaults, its
// MaxScanFileSize as --max-filesize, its exclusions, never its own state
// and quarantine.
func TestScanOptions(t *testing.T) {
	t.Parallel()
	a := scanAgent(t)
	a.p.MaxScanFileSize = 50 << 20
	a.p.ScanExclude = []string{"*.iso", "/srv/big"}
	o := a.scanOptions()
	want := unpack.DefaultLimits()
	want.MaxFileSize = 50 << 20
	if o.Limits != want || o.AllMatch || o.AlertExceedsMax || o.AlertEncrypted || o.MaxDirRecursion != 0 {
		t.Errorf("options %+v", o)
	}
	if strings.Join(o.ExcludePatterns, ",") != "*.iso" || strings.Join(o.Exclude, ",") != "/srv/big,"+a.p.StateDirectory+","+a.p.QuarantineDirectory {
		t.Errorf("exclusions %q %q", o.ExcludePatterns, o.Exclude)
	}
}
