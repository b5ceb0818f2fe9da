package dnsname

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/fakedns"
)

// TestResolveCNAMEChainAndAddresses resolves through a CNAME chain to
// every A and AAAA address, prints it as host(1) does, and tells an
// unknown name and a dangling alias apart; an address resolves to itself.
func TestResolveCNAMEChainAndAddresses(t *testing.T) {
	t.Parallel()
	s, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddCNAME("liveupdate.vendor.test", "lu.geo.vendor.test")
	s.AddCNAME("lu.geo.vendor.test", "lu-pool.vendor.test")
	s.SetAddrs("lu-pool.vendor.test", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("::1"))
	ctx := context.Background()
	r, err := Resolve(ctx, "liveupdate.vendor.test", s.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	r.WriteHost(&b)
	want := `liveupdate.vendor.test is an alias for lu.geo.vendor.test.
lu.geo.vendor.test is an alias for lu-pool.vendor.test.
lu-pool.vendor.test has address 127.0.0.2
lu-pool.vendor.test has address 127.0.0.3
lu-pool.vendor.test has address 127.0.0.4
lu-pool.vendor.test has IPv6 address ::1
`
	if b.String() != want {
		t.Errorf("host output:\n%s\nwant:\n%s", b.String(), want)
	}
	if r.Resolver != s.Addr() || len(r.Addrs) != 4 {
		t.Errorf("resolution %+v", r)
	}

	_, err = Resolve(ctx, "nothing.vendor.test", s.Addr(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "not found: 3(NXDOMAIN)") {
		t.Errorf("unknown name: %v", err)
	}
	s.AddCNAME("dangling.vendor.test", "gone.vendor.test")
	_, err = Resolve(ctx, "dangling.vendor.test", s.Addr(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "no A or AAAA record") {
		t.Errorf("dangling alias: %v", err)
	}
	r, err = Resolve(ctx, "127.0.0.9", "", time.Second)
	if err != nil || len(r.Addrs) != 1 || r.Addrs[0].String() != "127.0.0.9" || r.Resolver != "none" {
		t.Errorf("address literal: %+v, %v", r, err)
	}
	if n := s.Queries(); n == 0 {
		t.Errorf("the fake DNS server saw no query")
	}
}
