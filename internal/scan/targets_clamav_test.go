package scan

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-fleet/vigil/internal/testenv"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// TestTargetTypesSameAsClamAV: a file of each type ClamAV matches raw
// with the signatures of its own target (OLE2 2, graphics 5: PNG and GIF,
// PDF 10, Flash 11, Java class 12, binary data 14), holding a marker; .ndb
// and .ldb signatures of every target type 0 to 14 over the marker:
// each file is found by the generic signatures and those of its own
// target only, as clamscan finds it.
func TestTargetTypesSameAsClamAV(t *testing.T) {
	clamscan := testenv.NeedTool(t, "clamscan", "clamav")
	t.Parallel()
	dir := t.TempDir()
	mark := []byte("VIGILTARGETMARKERXYZ")
	chunk := func(typ string, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		b = append(b, typ...)
		b = append(b, data...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	filler := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(200))
		}
		return b
	}
	var png bytes.Buffer
	png.WriteString("\x89PNG\r\n\x1a\n")
	png.Write(chunk("IHDR", []byte{0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0}))
	png.Write(chunk("tEXt", append([]byte("c\x00"), mark...)))
	png.Write(chunk("IEND", nil))
	files := map[string][]byte{
		"a.png":   png.Bytes(),
		"a.gif":   slices.Concat([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00!\xfe"), []byte{byte(len(mark))}, mark, []byte("\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")),
		"a.pdf":   slices.Concat([]byte("%PDF-1.4\n1 0 obj\n<< /Title ("), mark, []byte(") >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")),
		"a.swf":   slices.Concat([]byte("FWS\x06\x26\x00\x00\x00\x00\x00\x00\x00"), mark, make([]byte, 6)),
		"a.ole":   slices.Concat([]byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"), make([]byte, 100), mark, make([]byte, 400)),
		"a.class": slices.Concat([]byte("\xca\xfe\xba\xbe\x00\x00\x00\x34\x00\x05"), mark, make([]byte, 40)),
		"a.bin":   slices.Concat([]byte{0, 1, 0x80, 0x9c, 0, 2, 0x9d, 0x81}, filler(300), mark, filler(300)),
		"a.txt":   slices.Concat([]byte("plain text, then "), mark, []byte(" and more text\n")),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(dir, "files", name), data)
	}
	h := hex.EncodeToString(mark)
	var ndb, ldb strings.Builder
	for tt := 0; tt <= 14; tt++ {
		fmt.Fprintf(&ndb, "Vigil.T%d:%d:*:%s\n", tt, tt, h)
		fmt.Fprintf(&ldb, "Vigil.L%d;Engine:51-255,Target:%d;0;%s\n", tt, tt, h)
	}
	sigs := filepath.Join(dir, "sigs")
	writeFile(t, filepath.Join(sigs, "t.ndb"), []byte(ndb.String()))
	writeFile(t, filepath.Join(sigs, "t.ldb"), []byte(ldb.String()))
	cl := slices.Compact(clamscanLines(t, clamscan, sigs, []string{"--allmatch"}, filepath.Join(dir, "files")))
	vl := slices.Compact(vigilLines(t, sigs, Options{Limits: unpack.DefaultLimits(), AllMatch: true}, filepath.Join(dir, "files")))
	if !slices.Equal(cl, vl) {
		t.Errorf("clamscan and ScanPaths differ:\n%s", lineDiff(cl, vl))
	}
	joined := strings.Join(cl, "\n") + "\n"
	for _, want := range []string{"a.png\tVigil.T5\n", "a.gif\tVigil.L5\n", "a.pdf\tVigil.T10\n", "a.swf\tVigil.L11\n",
		"a.ole\tVigil.T2\n", "a.class\tVigil.T12\n", "a.bin\tVigil.L14\n", "a.txt\tVigil.T0\n"} {
		if !strings.Contains(joined, want) {
			t.Errorf("clamscan does not report %q", strings.TrimSpace(want))
		}
	}
}
