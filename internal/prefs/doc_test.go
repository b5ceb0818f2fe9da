package prefs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the key table in docs/agent-preferences.md from Keys()")

var docPath = filepath.Join("..", "..", "docs", "agent-preferences.md")

const (
	tableBegin = "<!-- BEGIN KEY TABLE: generated from prefs.Keys(); go test ./internal/prefs -run TestDocKeyTable -update-docs -->\n"
	tableEnd   = "<!-- END KEY TABLE -->\n"
)

// keyTableMarkdown renders Keys() as the Markdown table in the docs.
func keyTableMarkdown() string {
	var b strings.Builder
	b.WriteString("| Key | Type | Required | Default | Meaning |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, k := range Keys() {
		req, def := "no", k.Default
		if k.Required {
			req = "**yes**"
		}
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Name, k.Type, req,
			strings.ReplaceAll(def, "|", `\|`), strings.ReplaceAll(k.Doc, "|", `\|`))
	}
	return b.String()
}

// TestDocKeyTable keeps the documentation's key table in step with Keys().
func TestDocKeyTable(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	begin := bytes.Index(doc, []byte(tableBegin))
	end := bytes.Index(doc, []byte(tableEnd))
	if begin < 0 || end < begin {
		t.Fatalf("%s: no generated key table between %q and %q", docPath, tableBegin, tableEnd)
	}
	start := begin + len(tableBegin)
	want := keyTableMarkdown()
	if got := string(doc[start:end]); got != want {
		if *updateDocs {
			out := append(append(bytes.Clone(doc[:start]), want...), doc[end:]...)
			if err := os.WriteFile(docPath, out, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("updated %s", docPath)
			return
		}
		t.Errorf("%s: key table is stale; run go test ./internal/prefs -run TestDocKeyTable -update-docs\ngot:\n%s\nwant:\n%s", docPath, got, want)
	}
}

// TestDocMentions checks the prose: the file locations, every key, and
// that every XML example in the document is a preference file Parse accepts.
func TestDocMentions(t *testing.T) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, s := range []string{
		"/Library/Preferences/com.vigil.agent.plist", "/etc/vigil/agent.plist",
		"/Library/Application Support/Vigil", "/var/lib/vigil",
	} {
		if !strings.Contains(doc, s) {
			t.Errorf("%s does not mention %s", docPath, s)
		}
	}
	examples := regexp.MustCompile("(?s)```xml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(examples) == 0 {
		t.Fatalf("%s has no ```xml example", docPath)
	}
	for i, m := range examples {
		name := fmt.Sprintf("%s example %d", docPath, i+1)
		if _, err := Parse(name, []byte(m[1])); err != nil {
			t.Errorf("example does not load: %v", err)
		}
	}
}
