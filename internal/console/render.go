package console

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/auth"
)

// pageNames are the templates, each a file of templates/ rendered in
// layout.html.
var pageNames = []string{"login", "dashboard", "agents", "agent", "commands", "command", "detections", "audit", "error"}

// layout is what every page gets.
type layout struct {
	Title    string
	Page     string
	LoggedIn bool
	User     string
	Role     auth.Role
	CSRF     string
	// CanIssue and CanRestore say whether the user's role shows the
	// controls that issue commands and restore files.
	CanIssue, CanRestore bool
	// Audit: the console has an audit page.
	Audit bool
	Data  any
}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when":   when,
		"join":   func(s []string) string { return strings.Join(s, ", ") },
		"keys":   sortedKeys,
		"target": targetString,
		"args":   argsString,
		"update": updateString,
	}
	out := map[string]*template.Template{}
	for _, p := range pageNames {
		t, err := template.New(p).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		out[p] = t
	}
	return out, nil
}

// render writes page in the layout; s is nil before login.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, s *session, title string, data any) {
	l := layout{Title: title, Page: page, Data: data, Audit: c.cfg.AuditLog != nil}
	if s != nil {
		l.LoggedIn, l.User, l.Role, l.CSRF = true, s.p.User, s.p.Role, s.csrf
		l.CanIssue, l.CanRestore = s.p.Role.Can(auth.Issue), s.p.Role.Can(auth.Restore)
	}
	var b bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&b, "layout", l); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail renders an error page: status and a message for people.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s session, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if status >= 500 {
		c.log.Error("console: "+r.URL.Path, "err", msg)
	}
	c.render(w, r, status, "error", &s, http.StatusText(status), msg)
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func sortedKeys(m map[string]uint64) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// csvCell neutralises a cell a spreadsheet would run as a formula (CSV
// injection): one that starts with = + - @, a tab or a carriage return
// gets a leading apostrophe.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// csvOut starts a streamed CSV download.
func csvOut(w http.ResponseWriter, name string) *csv.Writer {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	return csv.NewWriter(w)
}

// writeCSV writes one record, its cells neutralised.
func writeCSV(cw *csv.Writer, cells ...string) error {
	for i, s := range cells {
		cells[i] = csvCell(s)
	}
	return cw.Write(cells)
}
