package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestCheckInConn: the generator's own HTTP/1.1 exchange against Go's
// HTTP server: answers read whole on one kept-alive connection, a
// "Connection: close" answer followed by a new connection, an error
// status with its body, and the figures picked out of the answer.
func TestCheckInConn(t *testing.T) {
	var conns, reqs atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n := reqs.Add(1)
		if r.Header.Get("Authorization") != "Bearer id.tok" || string(b) != `{"x":1}` {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch n {
		case 2:
			w.Header().Set("Connection", "close")
		case 3:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintln(w, `{"error":"revoked","reason":"revoked"}`)
			return
		}
		fmt.Fprintf(w, `{"changed":true,"epoch":"18446744073709551615","latest_seq":%d,"checkin_interval_s":300,"spread_ms":5000}`+"\n", n)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	body := `{"x":1}`
	req := []byte(fmt.Sprintf("POST /v1/checkin HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer id.tok\r\nContent-Length: %d\r\n\r\n%s",
		srv.Listener.Addr(), len(body), body))
	cc := &checkInConn{addr: srv.Listener.Addr().String()}
	defer cc.close()
	for i := int64(1); i <= 5; i++ {
		status, b, err := cc.roundTrip(context.Background(), req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 3 {
			if status != http.StatusForbidden || !strings.Contains(string(b), `"reason":"revoked"`) {
				t.Fatalf("request 3: %d %q, want 403 with its body", status, b)
			}
			continue
		}
		epoch, ok1 := pickQuoted(b, `"epoch":"`)
		latest, ok2 := pickNumber(b, `"latest_seq":`)
		if status != 200 || !ok1 || epoch != 1<<64-1 || !ok2 || latest != uint64(i) {
			t.Fatalf("request %d: %d %q: epoch %d %v, latest %d %v", i, status, b, epoch, ok1, latest, ok2)
		}
	}
	// One connection up to the answer that closed it, one after.
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestDigits(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"200", 200, true}, {"9999999999999999999", 9999999999999999999, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"", 0, false}, {"-1", 0, false}, {"1a", 0, false}, {"18446744073709551616", 0, false}, {"99999999999999999999", 0, false},
	} {
		if got, ok := digits([]byte(c.in)); got != c.want || ok != c.ok {
			t.Errorf("digits(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
