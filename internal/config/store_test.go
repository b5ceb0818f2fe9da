package config

import (
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

const pw = "s3cret-Pa55"

func TestStoreDSNCheck(t *testing.T) {
	for _, ok := range []StoreDSN{"", "postgres:///vigil?host=/run/postgresql", "postgresql://vigil@db.example/vigil",
		"postgres://vigil:" + pw + "@db:5433/vigil?sslmode=verify-full", "postgres://a:5432,b:5433/vigil?port=6000"} {
		if err := ok.Check(); err != nil {
			t.Errorf("Check(%q): %v", ok, err)
		}
	}
	for _, tc := range []struct {
		dsn  StoreDSN
		want string
	}{
		{"mysql://vigil:" + pw + "@db/vigil", `unsupported scheme "mysql"`},
		{StoreDSN("host=db password=" + pw + " dbname=vigil"), "a keyword=value connection string is not accepted"},
		{"/var/lib/vigil-server/vigil.db", "not a URL"},
		{"postgres:" + pw, "with two slashes"},
		{"postgres://vigil:" + pw + "@db:0/vigil", `port "0"`},
		{"postgres://vigil:" + pw + "@db:70000/vigil", `port "70000"`},
		{"postgres:///vigil?port=x&password=" + pw, `port "x"`},
		{"postgres://vigil:" + pw + "@[::1/vigil", "not a URL"},
		{StoreDSN("postgres://vigil:" + pw + "@db/\x7f"), "not a URL"},
	} {
		err := tc.dsn.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), pw) {
			t.Errorf("Check(%q) = %v, want %q without the password", tc.dsn, err, tc.want)
		}
	}
}

func TestStoreDSNRedactWhere(t *testing.T) {
	for _, tc := range []struct {
		dsn             StoreDSN
		redacted, where string
		tcp             []string
	}{
		{"", "", "SQLite in the data directory", nil},
		{"postgres:///vigil?host=/run/postgresql&user=vigil", "postgres:///vigil?host=/run/postgresql&user=vigil", "database vigil on /run/postgresql", nil},
		{"postgres://vigil:" + pw + "@db.example:5433/fleet", "postgres://vigil:xxxxx@db.example:5433/fleet", "database fleet on db.example:5433", []string{"db.example:5433"}},
		{"postgresql://db.example/fleet?password=" + pw, "postgresql://db.example/fleet?password=xxxxx", "database fleet on db.example", []string{"db.example:5432"}},
		{"postgres://a:5432,b:5433/x", "postgres://a:5432,b:5433/x", "database x on a:5432,b:5433", []string{"a:5432", "b:5433"}},
		{"postgres://[fd77::9]/x?port=6000", "postgres://[fd77::9]/x?port=6000", "database x on [fd77::9]", []string{"[fd77::9]:6000"}},
		{"postgres://", "postgres:", "database (the user's default) on (the default socket)", nil},
	} {
		if got := tc.dsn.Redacted(); got != tc.redacted {
			t.Errorf("Redacted(%q) = %q, want %q", tc.dsn, got, tc.redacted)
		}
		if got := tc.dsn.Where(); got != tc.where {
			t.Errorf("Where(%q) = %q, want %q", tc.dsn, got, tc.where)
		}
		if got := tc.dsn.TCPEndpoints(); !slices.Equal(got, tc.tcp) {
			t.Errorf("TCPEndpoints(%q) = %q, want %q", tc.dsn, got, tc.tcp)
		}
	}
	dsn := StoreDSN("postgres://vigil:" + pw + "@db/x?password=" + pw + "2")
	if got := dsn.Scrub(errors.New("cannot connect to " + string(dsn)).Error()); strings.Contains(got, pw) {
		t.Errorf("Scrub left the password: %s", got)
	}
}

// As a flag, -store takes any text (never echoed by the flag package) and
// yields the redacted URL as its value for published settings.
func TestStoreDSNFlag(t *testing.T) {
	var c Server
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-store", "postgres://vigil:" + pw + "@db/x"}); err != nil {
		t.Fatal(err)
	}
	if string(c.Store) != "postgres://vigil:"+pw+"@db/x" {
		t.Fatalf("Store = %q", c.Store)
	}
	if got := fs.Lookup("store").Value.(flag.Getter).Get(); got != "postgres://vigil:xxxxx@db/x" {
		t.Errorf("Get() = %v", got)
	}
	if d := DefaultServer(); d.Store != "" {
		t.Errorf("default Store %q, want SQLite", d.Store)
	}
}
