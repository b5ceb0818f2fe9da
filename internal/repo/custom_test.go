package repo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestCompareDefinitionsVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"1", "2", -1}, {"10", "9", 1}, {"2026112501", "2026112501", 0}, {"007", "7", 0},
		{"0", "00", 0}, {"0", "1", -1}, {"99999999999999999999", "18446744073709551616", 1},
		{"2026112501", "2026112502", -1},
	} {
		if got := CompareDefinitionsVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareDefinitionsVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestCompareReleaseVersions(t *testing.T) {
	// Increasing, per semver.org's precedence example and more.
	order := []string{"v0.9.9", "v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-alpha.beta", "v1.0.0-beta",
		"v1.0.0-beta.2", "v1.0.0-beta.11", "v1.0.0-rc.1", "v1.0.0", "v1.0.1", "v1.2.0", "v1.10.0", "v2.0.0"}
	for i := range order {
		for j := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := CompareReleaseVersions(order[i], order[j]); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, bad := range []string{"", "1.2.3", "v1.2", "v1.2.3.4", "v1.2.3+x", "v01.0.0", "v1.0.0-", "v1.0.0-a..b", "v1.0.0-01", "v1.0.0-a/b", "V1.0.0", "v1.x.0"} {
		if CheckReleaseVersion(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func tf(custom string) *metadata.TargetFiles {
	f := metadata.TargetFile()
	if custom != "" {
		raw := json.RawMessage(custom)
		f.Custom = &raw
	}
	return f
}

func TestLatest(t *testing.T) {
	targets := map[string]*metadata.TargetFiles{
		"definitions/9.tar":                   tf(`{"kind":"definitions","version":"9"}`),
		"definitions/10.tar":                  tf(`{"kind":"definitions","version":"10"}`),
		"definitions/99.tar":                  tf(`{"kind":"definitions","version":"11"}`), // path and custom disagree: ignored
		"definitions/100.tar":                 tf(``),                                      // no custom: ignored
		"definitions/x.tar":                   tf(`{"kind":"definitions","version":"x"}`),  // bad version: ignored
		"other/readme":                        tf(`{"kind":"other","version":"1"}`),
		"vigil/v1.2.3/linux-amd64/vigil":      tf(`{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64"}`),
		"vigil/v1.10.0/linux-amd64/vigil":     tf(`{"kind":"vigil","version":"v1.10.0","os":"linux","arch":"amd64"}`),
		"vigil/v2.0.0-rc.1/linux-amd64/vigil": tf(`{"kind":"vigil","version":"v2.0.0-rc.1","os":"linux","arch":"amd64"}`),
		"vigil/v1.9.0/darwin-arm64/vigil":     tf(`{"kind":"vigil","version":"v1.9.0","os":"darwin","arch":"arm64"}`),
		"vigil/v3.0.0/linux-amd64/vigil":      tf(`{"kind":"vigil","version":"v3.0.0","os":"darwin","arch":"amd64"}`), // disagree
	}
	if p, v, ok := LatestDefinitions(targets); !ok || p != "definitions/10.tar" || v != "10" {
		t.Errorf("LatestDefinitions = %q %q %v", p, v, ok)
	}
	if p, v, ok := LatestRelease(targets, "linux", "amd64"); !ok || p != "vigil/v1.10.0/linux-amd64/vigil" || v != "v1.10.0" {
		t.Errorf("LatestRelease linux = %q %q %v", p, v, ok)
	}
	if p, v, ok := LatestRelease(targets, "darwin", "arm64"); !ok || v != "v1.9.0" || p != "vigil/v1.9.0/darwin-arm64/vigil" {
		t.Errorf("LatestRelease darwin = %q %q %v", p, v, ok)
	}
	if _, _, ok := LatestRelease(targets, "darwin", "amd64"); ok {
		t.Error("LatestRelease trusted a release whose path disagrees with its custom metadata")
	}
	if _, _, ok := LatestDefinitions(nil); ok {
		t.Error("LatestDefinitions of nothing")
	}
}

func TestParseCustom(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want Custom
		msg  string
	}{
		{`{"kind":"definitions","version":"2026112501"}`, Custom{Kind: "definitions", Version: "2026112501"}, ""},
		{`{"kind":"vigil","version":"v1.2.3","os":"darwin","arch":"arm64"}`, Custom{Kind: "vigil", Version: "v1.2.3", OS: "darwin", Arch: "arm64"}, ""},
		{``, Custom{}, "no custom metadata"},
		{`[]`, Custom{}, "cannot unmarshal"},
		{`{"version":"1"}`, Custom{}, "no kind"},
		{`{"kind":"virus","version":"1"}`, Custom{}, "unknown kind"},
		{`{"kind":"definitions","version":"v1"}`, Custom{}, "digits only"},
		{`{"kind":"definitions","version":"1","os":"linux"}`, Custom{}, "no os or arch"},
		{`{"kind":"vigil","version":"v1.2.3","os":"plan9","arch":"amd64"}`, Custom{}, `os "plan9"`},
		{`{"kind":"vigil","version":"1.2.3","os":"linux","arch":"amd64"}`, Custom{}, "no leading v"},
		{`{"kind":"definitions","version":"7","containers":[{"name":"main.cvd","version":62,"functionality_level":90,"signatures":3,"built":"2021-09-16T16:52:00Z"}]}`,
			Custom{Kind: "definitions", Version: "7", Containers: []Container{{Name: "main.cvd", Version: 62, FLevel: 90, Signatures: 3, Built: time.Date(2021, 9, 16, 16, 52, 0, 0, time.UTC)}}}, ""},
		{`{"kind":"definitions","version":"7","containers":[{"name":"x/main.cvd"}]}`, Custom{}, "path separator"},
		{`{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64","containers":[{"name":"main.cvd"}]}`, Custom{}, "no containers"},
		{`{"kind":"definitions","version":"7","signatures":{"hash":2,"body":1,"logical":1,"clamav":4,"not_matched":1,"skipped":3,"ignored_files":1}}`,
			Custom{Kind: "definitions", Version: "7", Signatures: &SignatureCount{Hash: 2, Body: 1, Logical: 1, ClamAV: 4, NotMatched: 1, Skipped: 3, IgnoredFiles: 1}}, ""},
		{`{"kind":"definitions","version":"7","signatures":{"skipped":-1}}`, Custom{}, "negative count"},
		{`{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64","signatures":{"hash":1}}`, Custom{}, "no containers or signature counts"},
		{`{"kind":"delta","version":"2026120202","base":"2026120201"}`, Custom{Kind: "delta", Version: "2026120202", Base: "2026120201"}, ""},
		{`{"kind":"delta","version":"10","base":"9"}`, Custom{Kind: "delta", Version: "10", Base: "9"}, ""},
		{`{"kind":"delta","version":"9","base":"10"}`, Custom{}, "base must be older"},
		{`{"kind":"delta","version":"7","base":"007"}`, Custom{}, "base must be older"},
		{`{"kind":"delta","version":"7"}`, Custom{}, "without a base"},
		{`{"kind":"delta","version":"7","base":"x1"}`, Custom{}, "base: definitions version"},
		{`{"kind":"delta","version":"v7","base":"1"}`, Custom{}, "digits only"},
		{`{"kind":"delta","version":"7","base":"1","os":"linux"}`, Custom{}, "carries no os"},
		{`{"kind":"delta","version":"7","base":"1","signatures":{"hash":1}}`, Custom{}, "signature counts"},
		{`{"kind":"definitions","version":"7","base":"1"}`, Custom{}, "only a delta has a base"},
		{`{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64","base":"1"}`, Custom{}, "only a delta has a base"},
	} {
		c, err := ParseCustom(json.RawMessage(tt.raw))
		if tt.msg == "" {
			if err != nil || !reflect.DeepEqual(c, tt.want) {
				t.Errorf("ParseCustom(%s) = %+v, %v", tt.raw, c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseCustom(%s) = %v, want error containing %q", tt.raw, err, tt.msg)
		}
	}
	// Round trip.
	c := Custom{Kind: KindVigil, Version: "v1.2.3", OS: "linux", Arch: "amd64"}
	raw, _ := json.Marshal(c)
	if back, err := ParseCustom(raw); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("round trip %+v -> %s -> %+v, %v", c, raw, back, err)
	}
}

func TestCheckBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	if CheckReleaseVersion("v1.0.0") != nil || CheckPlatform(runtime.GOOS, runtime.GOARCH) != nil {
		t.Skipf("no release platform %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if err := CheckBinary(exe, runtime.GOOS, runtime.GOARCH); err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if err := CheckBinary(exe, runtime.GOOS, other); err == nil {
		t.Errorf("%s/%s binary accepted as %s", runtime.GOOS, runtime.GOARCH, other)
	}
	otherOS := map[string]string{"linux": "darwin", "darwin": "linux"}[runtime.GOOS]
	if err := CheckBinary(exe, otherOS, runtime.GOARCH); err == nil {
		t.Errorf("%s binary accepted for %s", runtime.GOOS, otherOS)
	}
	script := filepath.Join(t.TempDir(), "vigil")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckBinary(script, runtime.GOOS, runtime.GOARCH); err == nil {
		t.Error("shell script accepted")
	}
}

func TestDeltas(t *testing.T) {
	targets := map[string]*metadata.TargetFiles{
		"definitions/10.tar":                tf(`{"kind":"definitions","version":"10"}`),
		"definitions/deltas/9-10.delta":     tf(`{"kind":"delta","version":"10","base":"9"}`),
		"definitions/deltas/8-10.delta":     tf(`{"kind":"delta","version":"10","base":"8"}`),
		"definitions/deltas/8-9.delta":      tf(`{"kind":"delta","version":"9","base":"8"}`),
		"definitions/deltas/7-10.delta":     tf(`{"kind":"delta","version":"10","base":"6"}`),  // path and custom disagree
		"definitions/deltas/10-11.delta":    tf(`{"kind":"delta","version":"10","base":"11"}`), // base newer
		"definitions/deltas/5-6.delta":      tf(``),
		"definitions/9-10.delta":            tf(`{"kind":"delta","version":"10","base":"9"}`), // wrong directory
		"vigil/v1.2.3/linux-amd64/vigil":    tf(`{"kind":"vigil","version":"v1.2.3","os":"linux","arch":"amd64"}`),
		"definitions/deltas/99-100.delta":   tf(`{"kind":"definitions","version":"100"}`),
		"definitions/deltas/99-100.delta.x": tf(`{"kind":"delta","version":"100","base":"99"}`),
	}
	targets["definitions/deltas/9-10.delta"].Length = 1234
	got := Deltas(targets)
	want := []DeltaTarget{
		{Path: "definitions/deltas/9-10.delta", Base: "9", Version: "10", Length: 1234},
		{Path: "definitions/deltas/8-10.delta", Base: "8", Version: "10"},
		{Path: "definitions/deltas/8-9.delta", Base: "8", Version: "9"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Deltas = %+v\nwant %+v", got, want)
	}
	if p := DeltaPath("2026120201", "2026120202"); p != "definitions/deltas/2026120201-2026120202.delta" {
		t.Errorf("DeltaPath = %q", p)
	}
	// A delta is never the latest definitions release.
	if p, v, ok := LatestDefinitions(targets); !ok || p != "definitions/10.tar" || v != "10" {
		t.Errorf("LatestDefinitions = %q %q %v", p, v, ok)
	}
}
