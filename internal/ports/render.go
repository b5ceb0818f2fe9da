package ports

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/vigil-fleet/vigil/internal/config"
)

// Rule is one firewall rule of this machine: accept the packets that open
// a flow (replies are accepted by connection tracking).
type Rule struct {
	Chain     string             // "input" or "output"
	Family    int                // 4 or 6, or 0 for both
	Protocol  string             // "tcp", "udp", "igmp" or "mld"
	Src, Dst  []netip.Prefix     // addresses of Family; empty = any
	Ports     []config.PortRange // destination ports (tcp, udp)
	Interface string             // iifname (input) or oifname (output); "" = any
	// Flows labels the flows the rule serves, "ID" or "ID (Step)".
	Flows []string
}

// Label is the rule's comment: "vigil " and the flows it serves.
func (r Rule) Label() string { return "vigil " + strings.Join(r.Flows, ", ") }

// Rules reduces the plan's flows to firewall rules, in the order of the
// flows, leaving out flows that stay on loopback and merging flows that
// need the same rule.
func (p *Plan) Rules() []Rule {
	var out []Rule
	for _, f := range p.Flows {
		if f.LoopbackOnly {
			continue
		}
		label := f.ID
		if f.Step != "" {
			label += " (" + f.Step + ")"
		}
		chain := "input"
		if f.Direction == "out" {
			chain = "output"
		}
		for _, fam := range families(f) {
			r := Rule{
				Chain: chain, Family: fam, Protocol: f.Protocol, Ports: f.Ports, Interface: f.Interface,
				Src: ofFamily(f.Src, fam), Dst: ofFamily(f.Dst, fam), Flows: []string{label},
			}
			if i := slices.IndexFunc(out, r.sameMatch); i >= 0 {
				if !slices.Contains(out[i].Flows, label) {
					out[i].Flows = append(out[i].Flows, label)
				}
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

// families are the address families a flow's rules cover: those its
// source and destination addresses both allow (no address allows both).
func families(f Flow) []int {
	switch f.Protocol {
	case "igmp":
		return []int{4}
	case "mld":
		return []int{6}
	}
	allow := func(ps []netip.Prefix, fam int) bool {
		return len(ps) == 0 || slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr().Is4() == (fam == 4) })
	}
	var out []int
	for _, fam := range []int{4, 6} {
		if allow(f.Src, fam) && allow(f.Dst, fam) {
			out = append(out, fam)
		}
	}
	if len(f.Src) == 0 && len(f.Dst) == 0 {
		return []int{0} // one rule for both
	}
	return out
}

func ofFamily(ps []netip.Prefix, fam int) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if fam == 0 || (fam == 4) == p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return out
}

func (r Rule) sameMatch(o Rule) bool {
	return r.Chain == o.Chain && r.Family == o.Family && r.Protocol == o.Protocol && r.Interface == o.Interface &&
		slices.Equal(r.Src, o.Src) && slices.Equal(r.Dst, o.Dst) && slices.Equal(r.Ports, o.Ports)
}

func (p *Plan) header(w io.Writer, prefix, format string) {
	fmt.Fprintf(w, "%s %s rules for the Vigil parts on this machine (%s), written by vigil ports.\n", prefix, format, strings.Join(p.Parts, ", "))
	if src := p.sources(); src != "" {
		fmt.Fprintf(w, "%s Read from %s.\n", prefix, src)
	}
	fmt.Fprintf(w, "%s Everything else in and out of this machine is dropped, except loopback and\n", prefix)
	fmt.Fprintf(w, "%s replies to accepted connections (FTP passive data has its own rules).\n", prefix)
	if a := p.allowedList(); a != "" {
		fmt.Fprintf(w, "%s Also kept open (-allow): %s.\n", prefix, a)
	}
	for _, n := range p.Warnings {
		fmt.Fprintf(w, "%s WARNING: %s.\n", prefix, n)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "%s NOTE: %s\n", prefix, n)
	}
}

// allowedList names the ports kept open with -allow, "" when none.
func (p *Plan) allowedList() string {
	var s []string
	for _, f := range p.Flows {
		if f.ID == FlowAllowed {
			s = append(s, f.Step)
		}
	}
	return strings.Join(s, ", ")
}

func (p *Plan) sources() string { return DescribeSources(p.Parts, p.Sources, p.Running) }

// DescribeSources says where the settings of each part in parts were
// read from: "server: /run/vigil/server.plist (settings of the running
// vigil server, pid 4242); agent: /etc/vigil/agent.plist (preference
// file)". files maps parts to files, running to the PID of a running
// part whose published settings were read.
func DescribeSources(parts []string, files map[string]string, running map[string]int) string {
	var s []string
	for _, part := range parts {
		f := files[part]
		if f == "" {
			continue
		}
		if pid, ok := running[part]; ok {
			s = append(s, fmt.Sprintf("%s: %s (settings of the running vigil %s, pid %d)", part, f, part, pid))
		} else {
			s = append(s, part+": "+f+" (preference file)")
		}
	}
	return strings.Join(s, "; ")
}

// WriteTable writes the flows as a table for people, then what multicast
// needs, then the notes.
func (p *Plan) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "Vigil network flows of this machine (%s)\n", strings.Join(p.Parts, ", "))
	if src := p.sources(); src != "" {
		fmt.Fprintf(w, "Read from %s\n", src)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tFLOW\tFROM\tTO\tPROTO\tPORTS\tWHY")
	for _, f := range p.Flows {
		id := f.ID
		if f.Step != "" {
			id += " (" + f.Step + ")"
		}
		ports := make([]string, len(f.Ports))
		for i, r := range f.Ports {
			ports[i] = r.String()
		}
		ps := strings.Join(ports, ",")
		if ps == "" {
			ps = "-"
		}
		to := f.To
		if f.Interface != "" {
			to += " on " + f.Interface
		}
		why := f.Why
		if f.LoopbackOnly && !strings.Contains(why, "loopback") {
			why += "; on loopback, so no rule is needed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Direction, id, f.From, to, f.Protocol, ps, why)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.Multicast) > 0 {
		fmt.Fprintf(w, "\nMulticast:\n")
		for _, m := range p.Multicast {
			fmt.Fprintf(w, "  - %s\n", m)
		}
	}
	if len(p.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings:\n")
		for _, n := range p.Warnings {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	if len(p.Notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n")
		for _, n := range p.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	_, err := fmt.Fprintf(w, "\nFirewall rules: vigil ports -format nft | iptables | ip6tables | pf [-allow tcp/22]\n")
	return err
}

// mldTypes are the ICMPv6 multicast listener messages: query, report,
// done, MLDv2 report.
var mldTypes = []int{130, 131, 132, 143}

// ndTypes are IPv6 neighbour discovery: router solicitation and
// advertisement, neighbour solicitation and advertisement.
var ndTypes = []int{133, 134, 135, 136}

// WriteNft writes an nftables script (for nft -f) that replaces the table
// inet vigil with base chains that drop by default and accept the plan's
// rules.
func (p *Plan) WriteNft(w io.Writer) error {
	var b strings.Builder
	b.WriteString("#!/usr/sbin/nft -f\n")
	p.header(&b, "#", "nftables")
	b.WriteString("# Load with nft -f FILE; remove with nft delete table inet vigil.\n\n")
	b.WriteString("table inet vigil\ndelete table inet vigil\n\ntable inet vigil {\n")
	rules := p.Rules()
	for _, chain := range []string{"input", "output"} {
		lo := `iifname "lo"`
		if chain == "output" {
			lo = `oifname "lo"`
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy drop;\n", chain, chain)
		fmt.Fprintf(&b, "\t\t%s accept\n\t\tct state established,related accept\n\t\tct state invalid drop\n", lo)
		b.WriteString("\t\ticmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept comment \"IPv6 neighbour discovery\"\n")
		for _, r := range rules {
			if r.Chain == chain {
				fmt.Fprintf(&b, "\t\t%s\n", r.nft())
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func nftSet(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return "{ " + strings.Join(items, ", ") + " }"
}

func prefixStrings(ps []netip.Prefix) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return s
}

func (r Rule) nft() string {
	var parts []string
	if r.Interface != "" {
		kw := "iifname"
		if r.Chain == "output" {
			kw = "oifname"
		}
		parts = append(parts, fmt.Sprintf("%s %q", kw, r.Interface))
	}
	ipkw := "ip"
	if r.Family == 6 {
		ipkw = "ip6"
	}
	if len(r.Src) > 0 {
		parts = append(parts, ipkw+" saddr "+nftSet(prefixStrings(r.Src)))
	}
	if len(r.Dst) > 0 {
		parts = append(parts, ipkw+" daddr "+nftSet(prefixStrings(r.Dst)))
	}
	switch r.Protocol {
	case "igmp":
		parts = append(parts, "ip protocol igmp")
	case "mld":
		parts = append(parts, "icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }")
	default:
		ports := make([]string, len(r.Ports))
		for i, pr := range r.Ports {
			ports[i] = pr.String()
		}
		parts = append(parts, r.Protocol+" dport "+nftSet(ports))
	}
	return strings.Join(parts, " ") + fmt.Sprintf(" accept comment %q", r.Label())
}

// WriteIptables writes the rules of family 4 (iptables-restore input) or
// 6 (ip6tables-restore input), replacing the filter table's INPUT and
// OUTPUT chains with default-drop ones.
func (p *Plan) WriteIptables(w io.Writer, family int) error {
	var b strings.Builder
	tool := "iptables"
	if family == 6 {
		tool = "ip6tables"
	}
	p.header(&b, "#", tool+"-restore")
	fmt.Fprintf(&b, "# Load with %s-restore < FILE (it replaces the filter table).\n", tool)
	b.WriteString("*filter\n:INPUT DROP [0:0]\n:OUTPUT DROP [0:0]\n")
	for _, c := range []struct{ chain, lo string }{{"INPUT", "-i lo"}, {"OUTPUT", "-o lo"}} {
		fmt.Fprintf(&b, "-A %s %s -j ACCEPT\n", c.chain, c.lo)
		fmt.Fprintf(&b, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n", c.chain)
		fmt.Fprintf(&b, "-A %s -m conntrack --ctstate INVALID -j DROP\n", c.chain)
		if family == 6 {
			for _, t := range ndTypes {
				fmt.Fprintf(&b, "-A %s -p ipv6-icmp --icmpv6-type %d -m comment --comment \"IPv6 neighbour discovery\" -j ACCEPT\n", c.chain, t)
			}
		}
	}
	for _, r := range p.Rules() {
		if r.Family != 0 && r.Family != family {
			continue
		}
		for _, line := range r.iptables() {
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r Rule) iptables() []string {
	chain := "INPUT"
	var m []string
	if r.Chain == "output" {
		chain = "OUTPUT"
	}
	if r.Interface != "" {
		if chain == "INPUT" {
			m = append(m, "-i", r.Interface)
		} else {
			m = append(m, "-o", r.Interface)
		}
	}
	if len(r.Src) > 0 {
		m = append(m, "-s", strings.Join(prefixStrings(r.Src), ","))
	}
	if len(r.Dst) > 0 {
		m = append(m, "-d", strings.Join(prefixStrings(r.Dst), ","))
	}
	comment := fmt.Sprintf("-m comment --comment %q -j ACCEPT", r.Label())
	prefix := "-A " + chain + " " + strings.Join(m, " ")
	prefix = strings.TrimSpace(prefix)
	switch r.Protocol {
	case "igmp":
		return []string{prefix + " -p igmp " + comment}
	case "mld":
		var out []string
		for _, t := range mldTypes {
			out = append(out, fmt.Sprintf("%s -p ipv6-icmp --icmpv6-type %d %s", prefix, t, comment))
		}
		return out
	}
	ports := make([]string, len(r.Ports))
	for i, pr := range r.Ports {
		ports[i] = strings.Replace(pr.String(), "-", ":", 1)
	}
	if len(ports) == 1 {
		return []string{fmt.Sprintf("%s -p %s --dport %s %s", prefix, r.Protocol, ports[0], comment)}
	}
	return []string{fmt.Sprintf("%s -p %s -m multiport --dports %s %s", prefix, r.Protocol, strings.Join(ports, ","), comment)}
}

// WritePF writes pf.conf rules (macOS and the BSDs): block everything,
// then pass the plan's rules.
func (p *Plan) WritePF(w io.Writer) error {
	var b strings.Builder
	p.header(&b, "#", "pf")
	b.WriteString("# Add to /etc/pf.conf (or an anchor) and load with pfctl -f /etc/pf.conf.\n")
	b.WriteString("set skip on lo0\nblock all\n")
	fmt.Fprintf(&b, "pass quick inet6 proto icmp6 icmp6-type { %s } # IPv6 neighbour discovery\n", joinInts(ndTypes))
	for _, r := range p.Rules() {
		b.WriteString(r.pf() + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func pfList(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return "{ " + strings.Join(items, ", ") + " }"
}

func (r Rule) pf() string {
	dir := "in"
	if r.Chain == "output" {
		dir = "out"
	}
	s := "pass " + dir + " quick"
	if r.Interface != "" {
		s += " on " + r.Interface
	}
	switch r.Family {
	case 4:
		s += " inet"
	case 6:
		s += " inet6"
	}
	switch r.Protocol {
	case "igmp":
		// IGMP carries the Router Alert IP option, which pf blocks
		// unless told otherwise.
		return s + " proto igmp all allow-opts # " + r.Label()
	case "mld":
		return s + fmt.Sprintf(" proto icmp6 all icmp6-type { %s } allow-opts # %s", joinInts(mldTypes), r.Label())
	}
	from, to := "any", "any"
	if len(r.Src) > 0 {
		from = pfList(prefixStrings(r.Src))
	}
	if len(r.Dst) > 0 {
		to = pfList(prefixStrings(r.Dst))
	}
	ports := make([]string, len(r.Ports))
	for i, pr := range r.Ports {
		ports[i] = strings.Replace(pr.String(), "-", ":", 1)
	}
	return fmt.Sprintf("%s proto %s from %s to %s port %s # %s", s, r.Protocol, from, to, pfList(ports), r.Label())
}
