package agent_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/wire"
)

// contractShim stands between the agents and a real server whose
// enrollment answer carries no signed epoch statement yet (the server
// side of issue 9 lands separately): it passes every request through and
// adds to such an answer the statement the server will sign, with the
// server's own key from its data directory. An answer that carries a
// statement passes unchanged, so once the server signs its answers the
// shim does nothing.
type contractShim struct {
	srv     *httptest.Server
	target  *url.URL
	dataDir string
	client  *http.Client
}

func newContractShim(t *testing.T, target, dataDir, tlsCert, tlsKey string) *contractShim {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	s := &contractShim{target: u, dataDir: dataDir, client: &http.Client{Timeout: 30 * time.Second}}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	if u.Scheme == "https" {
		// The hop from the shim to the server is the test's own, on
		// loopback; the agents verify the shim's certificate, the same.
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		proxy.Transport = tr
		s.client.Transport = tr
	}
	mux := http.NewServeMux()
	mux.Handle("/", proxy)
	mux.HandleFunc("POST "+u.Path+api.PathEnroll, s.enroll)
	s.srv = httptest.NewUnstartedServer(mux)
	if tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
		if err != nil {
			t.Fatal(err)
		}
		s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the NodeCommURL agents use.
func (s *contractShim) URL() string { return s.srv.URL + s.target.Path }

func (s *contractShim) enroll(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req api.EnrollRequest
	json.Unmarshal(body, &req)
	resp, err := s.client.Post(s.target.String()+api.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var er api.EnrollResponse
	if resp.StatusCode == http.StatusCreated && json.Unmarshal(b, &er) == nil && len(er.Proof) == 0 {
		priv, err := server.DataDir{Path: s.dataDir}.SigningKey()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st, err := wire.EncodeEpochStatement(wire.EpochStatement{Agent: er.AgentID, Nonce: req.Nonce})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		now := time.Now()
		er.Proof, err = wire.Sign(priv, wire.Header{Kind: wire.KindEpoch, Epoch: er.Epoch, Seq: er.LatestSeq, Issued: now, Expires: now.Add(10 * time.Minute)}, st)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		b, _ = json.Marshal(er)
	}
	w.Header().Set("Content-Type", strings.TrimSpace(resp.Header.Get("Content-Type")))
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
}
