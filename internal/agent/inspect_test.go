package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadState(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := ReadState(dir); ok || err != nil {
		t.Fatalf("empty state directory: enrolled %v, err %v", ok, err)
	}
	id := Identity{AgentID: "0123456789abcdef", Token: "0123456789abcdef.secret", Epoch: 1 << 60, Server: "http://127.0.0.1:1/vigil"}
	if err := writeJSON(filepath.Join(dir, FileIdentityName), id); err != nil {
		t.Fatal(err)
	}
	j, _, err := OpenJournal(filepath.Join(dir, FileJournalName))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Reset(id.Epoch, 7, false); err != nil {
		t.Fatal(err)
	}
	if err := j.Skip(8); err != nil {
		t.Fatal(err)
	}
	j.Close()
	before, err := os.ReadFile(filepath.Join(dir, FileJournalName))
	if err != nil {
		t.Fatal(err)
	}
	st, ok, err := ReadState(dir)
	if err != nil || !ok || st.Identity != id || st.LastSeq != 8 {
		t.Fatalf("ReadState = %+v, %v, %v", st, ok, err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, FileJournalName))
	if string(after) != string(before) {
		t.Fatal("ReadState changed the journal")
	}
	if err := os.WriteFile(filepath.Join(dir, FileIdentityName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ReadState(dir); ok || err == nil {
		t.Fatalf("malformed identity: enrolled %v, err %v", ok, err)
	}
}
