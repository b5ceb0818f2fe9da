package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
)

// checkInBodies are check-in bodies: what agents send, and what the fast
// path must hand to encoding/json.
var checkInBodies = []struct {
	body string
	fast bool // decoded without encoding/json
}{
	{`{"epoch":"1234567890123","hostname":"web-1","os":"linux","arch":"amd64","version":"1.2.3","last_seq":42}`, true},
	{`{"epoch":"7","hostname":"h","os":"linux","arch":"arm64","version":"v","defs_version":"2026.12.01","groups":["a","b"],"last_seq":0,"counters":{"executed":3,"old":6},"on_access":{"enabled":true,"running":false,"mode":"notify","paths":["/home","/tmp"],"error":"fanotify: EPERM"}}`, true},
	{" \n{ \"epoch\" : \"0\" , \"hostname\" : \"h\" , \"groups\" : [ ] , \"counters\" : { } , \"on_access\" : { } } \n", true},
	{`{"hostname":"héllo-wörld"}`, true},
	{`{"last_seq":18446744073709551615}`, true},
	{`{"hostname":"a","hostname":"b"}`, true},
	{`{}`, true},
	{`{"epoch":"9","update":{"from":"2026120201","to":"2026120203","at":"2026-12-03T03:30:00.123456789Z","bytes":41984,"full_bytes":23068672,"deltas":2}}`, true},
	{`{"update":{"to":"1","at":"2026-12-03T04:30:00+01:00","bytes":0,"full_bytes":9223372036854775807,"deltas":0}}`, true},
	{`{"update":{}}`, true},
	{`{"update":{"to":"a","to":"b"}}`, true},
	// encoding/json's cases.
	{`{"last_seq":18446744073709551616}`, false},
	{`{"last_seq":-1}`, false},
	{`{"last_seq":1.0}`, false},
	{`{"last_seq":1e3}`, false},
	{`{"last_seq":01}`, false},
	{`{"epoch":5}`, false},
	{`{"epoch":"05"}`, false},
	{`{"epoch":"x"}`, false},
	{`{"Hostname":"case"}`, false},
	{`{"hostname":"a\"b"}`, false},
	{`{"hostname":"a\u0000b"}`, false},
	{"{\"hostname\":\"\xff\"}", false},
	{`{"hostname":null}`, false},
	{`{"groups":null}`, false},
	{`{"counters":{"a":1},"counters":{"b":2}}`, false},
	{`{"on_access":{"enabled":true},"on_access":{"mode":"block"}}`, false},
	{`{"on_access":{"enabled":truex}}`, false},
	{`{"unknown":1}`, false},
	{`{"on_access":{"other":1}}`, false},
	{`{"hostname":"a"} {"hostname":"b"}`, false},
	{`{"hostname":"a"}x`, false},
	{`{"hostname":"a",}`, false},
	{`{"hostname":"a"`, false},
	{``, false},
	{`[]`, false},
	{`{"groups":["a",1]}`, false},
	{`{"counters":{"a":-1}}`, false},
	{`{"update":null}`, false},
	{`{"update":{"to":"1"},"update":{"from":"0"}}`, false},
	{`{"update":{"bytes":-1}}`, false},
	{`{"update":{"deltas":-2}}`, false},
	{`{"update":{"full_bytes":9223372036854775808}}`, false},
	{`{"update":{"deltas":1.5}}`, false},
	{`{"update":{"at":"yesterday"}}`, false},
	{`{"update":{"at":"2026-12-03T03:30:00"}}`, false},
	{`{"update":{"at":null}}`, false},
	{`{"update":{"at":"2026-12-03T03:30:00\u005a"}}`, false},
	{`{"update":{"To":"1"}}`, false},
	{`{"update":{"size":1}}`, false},
}

// decodeWith runs decode over body as the handler does and returns the
// request, the answer's status and its body.
func decodeWith(decode func(http.ResponseWriter, *http.Request, *api.CheckInRequest) bool, body string) (api.CheckInRequest, bool, int, string) {
	var req api.CheckInRequest
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/checkin", strings.NewReader(body))
	ok := decode(w, r, &req)
	return req, ok, w.Code, w.Body.String()
}

func TestDecodeCheckInAsEncodingJSON(t *testing.T) {
	generic := func(w http.ResponseWriter, r *http.Request, req *api.CheckInRequest) bool {
		return decodeBody(w, r, req)
	}
	for _, c := range checkInBodies {
		var fast api.CheckInRequest
		if got := parseCheckIn([]byte(c.body), &fast); got != c.fast {
			t.Errorf("%q: fast path took it: %v, want %v", c.body, got, c.fast)
		}
		want, wantOK, wantCode, wantMsg := decodeWith(generic, c.body)
		got, gotOK, gotCode, gotMsg := decodeWith(decodeCheckIn, c.body)
		if gotOK != wantOK || gotCode != wantCode || gotMsg != wantMsg {
			t.Errorf("%q: decodeCheckIn: ok %v, %d %q; encoding/json: ok %v, %d %q", c.body, gotOK, gotCode, gotMsg, wantOK, wantCode, wantMsg)
			continue
		}
		if wantOK && !reflect.DeepEqual(got, want) {
			t.Errorf("%q: decodeCheckIn gave %+v, encoding/json %+v", c.body, got, want)
		}
		if c.fast && !reflect.DeepEqual(fast, want) {
			t.Errorf("%q: fast path gave %+v, encoding/json %+v", c.body, fast, want)
		}
	}
}

// The body the agent daemon's client sends goes by the fast path.
func TestDecodeCheckInAgentBody(t *testing.T) {
	req := api.CheckInRequest{
		Epoch: 1733190000123456, Hostname: "host-1", OS: "linux", Arch: "amd64", Version: "vigil 1.4.0 (abc123)",
		DefsVer: "27431", Groups: []string{"servers", "eu"}, LastSeq: 991,
		Counters: map[string]uint64{"executed": 12, "old": 30, "via_http": 1},
		OnAccess: &api.OnAccessState{Enabled: true, Running: true, Mode: "block", Paths: []string{"/srv"}},
		Update: &api.UpdateState{From: "2026120201", To: "2026120203", At: time.Date(2026, 12, 3, 3, 30, 0, 5, time.UTC),
			Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2},
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got api.CheckInRequest
	if !parseCheckIn(b, &got) {
		t.Fatalf("the fast path refused %s", b)
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("fast path gave %+v, want %+v", got, req)
	}
}

func TestCheckInResponseAsWriteJSON(t *testing.T) {
	for _, resp := range []api.CheckInResponse{
		{},
		{Changed: true, Epoch: 1<<64 - 1, LatestSeq: 1<<64 - 1, Timing: api.Timing{CheckInSeconds: 300, SpreadMillis: 5000}},
		{Epoch: 17, LatestSeq: 3, Timing: api.Timing{CheckInSeconds: -1, SpreadMillis: 0}},
		{Epoch: 17, LatestSeq: 3, EpochProof: []byte{1, 2, 3}},
	} {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, http.StatusOK, resp)
		writeCheckInResponse(got, resp)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("%+v: wrote %d %v %q, writeJSON %d %v %q", resp, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}

// FuzzParseCheckIn checks that whatever the fast path accepts,
// encoding/json accepts too and decodes to the same value.
func FuzzParseCheckIn(f *testing.F) {
	for _, c := range checkInBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast api.CheckInRequest
		if !parseCheckIn(b, &fast) {
			return
		}
		w := httptest.NewRecorder()
		var want api.CheckInRequest
		if !decodeBody(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(b))), &want) {
			t.Fatalf("%q: the fast path took what encoding/json refuses: %s", b, w.Body)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: fast path gave %+v, encoding/json %+v", b, fast, want)
		}
	})
}
