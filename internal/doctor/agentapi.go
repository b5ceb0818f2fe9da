package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/agent"
	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/ports"
)

// AgentAPIConfig is what AgentAPI needs from an agent's preferences.
type AgentAPIConfig struct {
	// NodeCommURL is the agent API's base URL.
	NodeCommURL string
	// CACertFile is the ServerCACertificate preference: a PEM file of the
	// only CAs trusted for an https NodeCommURL ("": the system's roots).
	CACertFile string
	// StateDir is the agent's state directory (StateDirectory), where its
	// identity and credential are kept.
	StateDir string
	// Timeout bounds each step (connecting, the answer); zero means
	// DefaultTimeout.
	Timeout time.Duration
	// NoCredential, when set, says why no credential is used (StateDir is
	// then not read): the check only asks without one, as for an agent
	// not enrolled yet, and names this reason instead. A relay's check
	// sets it: the relay keeps its credential in its own state.
	NoCredential string
	// URLKey and CAKey name the settings NodeCommURL and CACertFile come
	// from, in messages: "NodeCommURL" and "ServerCACertificate" (the
	// agent's) when "".
	URLKey, CAKey string
}

func (cfg AgentAPIConfig) keys() (urlKey, caKey string) {
	urlKey, caKey = cfg.URLKey, cfg.CAKey
	if urlKey == "" {
		urlKey = "NodeCommURL"
	}
	if caKey == "" {
		caKey = "ServerCACertificate"
	}
	return urlKey, caKey
}

// AgentAPI checks the flow from this agent to the server's agent API: the
// server at cfg.NodeCommURL answers, and accepts the credential the agent
// keeps in cfg.StateDir. With a credential, it asks for the commands after
// the agent's last one (GET /v1/commands?after=N&limit=1, authenticated
// and read-only, as an agent fetching missed commands does); a refused
// credential fails with the HTTP status. Without one (the agent has not
// enrolled yet, or enrolled with another NodeCommURL and will enrol
// again), it checks that the server answers at all: the same request
// without a credential must get the agent API's 401 (which the server
// counts in its authentication-failure metric); cfg.NoCredential asks so
// whatever StateDir holds. With an https URL,
// the server's certificate is verified as the agent does (only
// cfg.CACertFile's CAs when set).
func AgentAPI(ctx context.Context, cfg AgentAPIConfig) Result {
	t := startTimer()
	step := cfg.Timeout
	if step <= 0 {
		step = DefaultTimeout
	}
	target := cfg.NodeCommURL
	urlKey, caKey := cfg.keys()
	u, err := url.Parse(cfg.NodeCommURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return t.result(ports.FlowAgentAPI, target, false, "%s %q: want an http:// or https:// URL with a host", urlKey, cfg.NodeCommURL)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	hc, err := agentHTTPClient(u.Scheme, cfg.CACertFile, urlKey, caKey, step)
	if err != nil {
		return t.result(ports.FlowAgentAPI, target, false, "%v", err)
	}
	defer hc.CloseIdleConnections()
	client := &api.AgentClient{Client: api.Client{Base: strings.TrimSuffix(cfg.NodeCommURL, "/"), HTTP: hc, UserAgent: "vigil-doctor/" + buildinfo.String()}}

	var st agent.State
	var enrolled bool
	why := cfg.NoCredential
	if why == "" {
		why = "not enrolled yet (no credential in " + cfg.StateDir + ")"
		if st, enrolled, err = agent.ReadState(cfg.StateDir); err != nil {
			return t.result(ports.FlowAgentAPI, target, false, "agent state in %s unreadable: %v", cfg.StateDir, err)
		}
	}
	if enrolled && st.Identity.Server != cfg.NodeCommURL {
		why = fmt.Sprintf("credential in %s is for %s, not this NodeCommURL: the agent will enrol again", cfg.StateDir, st.Identity.Server)
		enrolled = false
	}
	if !enrolled {
		// The body is not read: any success means something answered
		// without asking for a credential.
		err := client.Call(ctx, api.RouteCommands, url.Values{"after": {"0"}, "limit": {"1"}}, nil, nil)
		switch {
		case api.IsStatus(err, http.StatusUnauthorized):
			return t.result(ports.FlowAgentAPI, target, true, "%s; server answers as a Vigil agent API (HTTP 401 to a request without credential, as expected) in %s", why, fmtDur(time.Since(t.start)))
		case err == nil:
			return t.result(ports.FlowAgentAPI, target, false, "%s; and the URL answered a request without credential with success: is it a Vigil agent API?", why)
		}
		return t.result(ports.FlowAgentAPI, target, false, "%s; %s", why, explainHTTP(err, step, port, cfg.CACertFile, caKey))
	}

	client.Auth = st.Identity.Token
	resp, err := client.CommandsAfter(ctx, st.LastSeq, 1)
	id := st.Identity.AgentID
	if err != nil {
		var he *api.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusUnauthorized {
			return t.result(ports.FlowAgentAPI, target, false, "credential of agent %s refused: HTTP %d %s (%s): the server does not know this agent or the token in %s is wrong; remove it and enrol again with EnrollmentSecret",
				id, he.Code, http.StatusText(he.Code), he.Message, filepath.Join(cfg.StateDir, agent.FileIdentityName))
		}
		return t.result(ports.FlowAgentAPI, target, false, "%s", explainHTTP(err, step, port, cfg.CACertFile, caKey))
	}
	if resp.Epoch != st.Identity.Epoch {
		return t.result(ports.FlowAgentAPI, target, false, "credential of agent %s accepted, but the server's epoch %d is not the agent's %d: the agent drops every command of this server (wrong_epoch)",
			id, resp.Epoch, st.Identity.Epoch)
	}
	return t.result(ports.FlowAgentAPI, target, true, "credential of agent %s accepted in %s; server's latest command %d, agent at %d",
		id, fmtDur(time.Since(t.start)), resp.LatestSeq, st.LastSeq)
}

// agentHTTPClient is the client the agent uses: the environment's proxy,
// and, with caFile, only that CA for the server's certificate. urlKey and
// caKey name the settings in errors.
func agentHTTPClient(scheme, caFile, urlKey, caKey string, step time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer(step).DialContext
	tr.TLSHandshakeTimeout = step
	tr.ResponseHeaderTimeout = step
	if caFile != "" {
		if scheme != "https" {
			return nil, fmt.Errorf("%s %s is set but %s is not https://", caKey, caFile, urlKey)
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", caKey, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", caKey, caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 3 * step}, nil
}

// explainHTTP explains a failed request to an HTTP(S) server; caKey names
// the setting of caFile, the CA pinned for it.
func explainHTTP(err error, step time.Duration, port, caFile, caKey string) string {
	var he *api.HTTPError
	if errors.As(err, &he) {
		msg := fmt.Sprintf("HTTP %d %s", he.Code, http.StatusText(he.Code))
		if he.Message != "" {
			msg += " (" + he.Message + ")"
		}
		if he.Code == http.StatusNotFound {
			msg += ": is the URL's path the server's agent API base path?"
		}
		return msg
	}
	var ue x509.UnknownAuthorityError
	var he2 x509.HostnameError
	var ce x509.CertificateInvalidError
	var tv *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ue), errors.As(err, &tv) && errors.As(tv.Err, &ue):
		if caFile != "" {
			return "TLS: the server's certificate is not signed by the CA in " + caKey + " " + caFile
		}
		return "TLS: the server's certificate is signed by an unknown authority: set " + caKey + " to its CA"
	case errors.As(err, &he2):
		return "TLS: " + he2.Error()
	case errors.As(err, &ce):
		return "TLS: " + ce.Error()
	case errors.As(err, &tv):
		return "TLS: " + tv.Error()
	}
	return describe(err, step) + hint(err, port)
}
