package mirror

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/fakedns"
	"github.com/vigil-fleet/vigil/internal/testenv"
)

// TestHTTPSByAddressKeepsName: over HTTPS the mirror connects to the
// address it resolved, but sends the name in the Host header and in TLS
// (SNI) and verifies the certificate against the name.
func TestHTTPSByAddressKeepsName(t *testing.T) {
	v := newVendor(t)
	v.publish("1", 64<<10)
	pub := v.r.PublicDir()

	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: upstreamName},
		DNSNames: []string{upstreamName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)

	var mu sync.Mutex
	hosts, snis := map[string]bool{}, map[string]bool{}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hosts[r.Host] = true
			mu.Unlock()
			http.StripPrefix("/repo", http.FileServer(http.Dir(pub))).ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				mu.Lock()
				snis[h.ServerName] = true
				mu.Unlock()
				return nil, nil
			},
		},
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	dns, err := fakedns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	dns.SetAddrs(upstreamName, netip.MustParseAddr("127.0.0.2"))
	root := v.rootJSON()
	cfg := Config{
		Upstream: "https://" + upstreamName + ":" + itoa(port) + "/repo",
		Root:     root, Dir: filepath.Join(t.TempDir(), "m"), Resolver: dns.Addr(),
		Timeout: 5 * time.Second, Out: &testenv.Buffer{}, TLS: &tls.Config{RootCAs: pool},
	}
	sum := syncOK(t, cfg)
	if sum.Fetched.TargetFiles != 1 {
		t.Errorf("fetched %+v", sum.Fetched)
	}
	verifyState(t, cfg.Dir, root)
	wantHost := upstreamName + ":" + itoa(port)
	if len(hosts) != 1 || !hosts[wantHost] || len(snis) != 1 || !snis[upstreamName] {
		t.Errorf("Host headers %v, SNI %v; want %s and %s", hosts, snis, wantHost, upstreamName)
	}

	// Without the CA, the certificate is refused: the address is skipped.
	cfg.TLS = nil
	m, _ := New(cfg)
	_, err = m.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
