package fakedns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func TestServer(t *testing.T) {
	if _, err := Start("0.0.0.0:0"); err == nil {
		t.Fatal("a non-loopback address was accepted")
	}
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddCNAME("a.test", "b.test")
	s.AddCNAME("b.test", "c.test")
	s.SetAddrs("c.test", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1"))
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network}
		m := new(dns.Msg)
		m.SetQuestion("A.TEST.", dns.TypeA)
		r, _, err := c.Exchange(m, s.Addr())
		if err != nil {
			t.Fatal(network, err)
		}
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 3 {
			t.Fatalf("%s: %v", network, r)
		}
		if c1, ok := r.Answer[0].(*dns.CNAME); !ok || c1.Target != "b.test." {
			t.Errorf("%s: first answer %v", network, r.Answer[0])
		}
		if a, ok := r.Answer[2].(*dns.A); !ok || a.A.String() != "127.0.0.2" {
			t.Errorf("%s: last answer %v", network, r.Answer[2])
		}
		m.SetQuestion("c.test.", dns.TypeAAAA)
		r, _, _ = c.Exchange(m, s.Addr())
		if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "::1" {
			t.Errorf("%s: AAAA %v", network, r.Answer)
		}
		m.SetQuestion("example.com.", dns.TypeA)
		r, _, _ = c.Exchange(m, s.Addr())
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Errorf("%s: unknown name answered %v", network, r)
		}
		m.SetQuestion("c.test.", dns.TypeMX)
		r, _, _ = c.Exchange(m, s.Addr())
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("%s: MX %v", network, r)
		}
	}
	if s.Queries() != 8 {
		t.Errorf("queries %d", s.Queries())
	}
	s.Remove("c.test")
	m := new(dns.Msg)
	m.SetQuestion("c.test.", dns.TypeA)
	r, _, _ := new(dns.Client).Exchange(m, s.Addr())
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("removed name: %v", r)
	}
}
