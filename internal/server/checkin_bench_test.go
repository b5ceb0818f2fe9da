package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/server/servertest"
)

// BenchmarkCheckInHTTP measures the server's check-in handling in
// process: 1,000 enrolled agents check in round robin, each reporting the
// same state every time (the common case: acknowledged before it is
// written), over kept-alive connections, one per goroutine of
// b.RunParallel; under the server's default GC target and under the
// runtime's (100), which the process's client shares. The client's CPU is
// in the same process: profile with -cpuprofile and read the server's
// side (handleCheckIn, net/http's serve):
//
//	go test -run '^$' -bench BenchmarkCheckInHTTP -cpuprofile cpu.out ./internal/server
func BenchmarkCheckInHTTP(b *testing.B) {
	for _, gc := range []int{server.DefaultGCPercent, 100} {
		b.Run(fmt.Sprintf("gcpercent=%d", gc), func(b *testing.B) { benchCheckInHTTP(b, gc) })
	}
	debug.SetGCPercent(100)
}

func benchCheckInHTTP(b *testing.B, gcPercent int) {
	ts := servertest.Start(b, server.Config{Server: config.Server{Repeat: 1, BeaconInterval: time.Hour},
		GCPercent: gcPercent, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	type agent struct{ auth, body string }
	agents := make([]agent, 1000)
	for i := range agents {
		var r api.EnrollResponse
		if err := ts.AgentClient("").Call(ctx, api.RouteEnroll, nil, api.EnrollRequest{
			Secret: ts.EnrollSecret(), Nonce: newNonce(), Hostname: "h", OS: "linux", Arch: "amd64", Version: "bench",
		}, &r); err != nil {
			b.Fatal(err)
		}
		body, _ := json.Marshal(api.CheckInRequest{Epoch: r.Epoch, Hostname: "h", OS: "linux", Arch: "amd64", Version: "bench",
			Groups: []string{"lab"}, LastSeq: r.LatestSeq, Counters: map[string]uint64{"executed": 1}})
		agents[i] = agent{"Bearer " + r.Token, string(body)}
	}
	url := api.RouteCheckIn.URL(ts.URL, nil)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var next atomic.Uint64
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a := agents[next.Add(1)%uint64(len(agents))]
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(a.body)))
			req.Header.Set("Authorization", a.auth)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("check-in: %s", resp.Status)
				return
			}
		}
	})
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.NumGC-m0.NumGC)*1000/float64(b.N), "gc-cycles/1k-checkins")
	b.ReportMetric(float64(m1.PauseTotalNs-m0.PauseTotalNs)/float64(b.N), "gc-pause-ns/checkin")
}
