package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/buildinfo"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// timestampMax bounds the timestamp.json read by the transport checks
// (go-tuf's limit).
const timestampMax = 16384

// LiveUpdate checks the flow from this agent to the LiveUpdate server at
// rawURL (an entry of the agent's LiveUpdateServers: the repository's
// public directory over ftp://, http:// or https://). flow is
// ports.FlowDefinitions for an internal server, ports.FlowDefinitionsPublic for the
// vendor's public one. The results, in order:
//
//   - ftp://: "(control)": the control connection and the anonymous login;
//     then "(passive data)": a passive data connection (EPSV, falling back
//     to PASV, as the agent's updater) carrying RETR of
//     metadata/timestamp.json. They are separate so that a blocked passive
//     port range is told from a blocked control port.
//   - http(s)://: "(timestamp.json)": a GET of metadata/timestamp.json.
//   - "(metadata)": the repository's metadata refreshed from root (the
//     pinned 1.root.json) with the agent's updater code, in memory, no
//     target downloaded: the timestamp version and expiry on success, the
//     updater's error (tampered, expired, rollback...) on failure.
//
// A step is only run when the ones before it worked.
func LiveUpdate(ctx context.Context, flow, rawURL string, root []byte, o Options) []Result {
	t := startTimer()
	step := o.timeout()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return []Result{t.result(flow, rawURL, false, "not a LiveUpdate server URL (ftp://, http:// or https://HOST/PATH)")}
	}
	shown := u.Redacted()
	var res []Result
	var client *http.Client
	switch u.Scheme {
	case "ftp":
		res = ftpChecks(ctx, flow, u, step)
	case "http", "https":
		client = httpClient(o.TLS, step)
		defer client.CloseIdleConnections()
		res = []Result{httpTimestamp(ctx, flow, u, client, step, o.caKey())}
	default:
		return []Result{t.result(flow, shown, false, "scheme %q: want ftp://, http:// or https://", u.Scheme)}
	}
	if Failed(res) {
		return res
	}
	return append(res, metadataCheck(ctx, flow, rawURL, root, client, step))
}

// metadataCheck verifies the repository's metadata from the pinned root.
func metadataCheck(ctx context.Context, flow, rawURL string, root []byte, client *http.Client, step time.Duration) Result {
	t := startTimer()
	target := redacted(rawURL) + " (metadata)"
	if len(root) == 0 {
		return t.result(flow, target, false, "not checked: no pinned root metadata (RepositoryRoot)")
	}
	info, err := definitions.CheckMetadata(ctx, rawURL, root, client, step)
	if err != nil {
		return t.result(flow, target, false, "%v", err)
	}
	defs := "no definitions release listed"
	if info.Definitions != "" {
		defs = "newest definitions " + info.Definitions
	}
	return t.result(flow, target, true, "verifies: timestamp version %d expires %s (snapshot %d, targets %d, root %d); %s",
		info.Timestamp, info.Expires.UTC().Format(time.RFC3339), info.Snapshot, info.Targets, info.Root, defs)
}

func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// httpClient is a client with per-step timeouts and the environment's
// proxy, as the agent's updater uses.
func httpClient(tc *tls.Config, step time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer(step).DialContext
	tr.TLSHandshakeTimeout = step
	tr.ResponseHeaderTimeout = step
	if tc != nil {
		tr.TLSClientConfig = tc.Clone()
	}
	return &http.Client{Transport: tr, Timeout: 3 * step}
}

// httpTimestamp GETs metadata/timestamp.json.
func httpTimestamp(ctx context.Context, flow string, u *url.URL, client *http.Client, step time.Duration, caKey string) Result {
	t := startTimer()
	target := u.Redacted() + " (timestamp.json)"
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	file := strings.TrimRight(u.String(), "/") + "/metadata/timestamp.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, file, nil)
	if err != nil {
		return t.result(flow, target, false, "%v", err)
	}
	req.Header.Set("User-Agent", "vigil-doctor/"+buildinfo.String())
	resp, err := client.Do(req)
	if err != nil {
		return t.result(flow, target, false, "GET metadata/timestamp.json: %s", explainHTTP(err, step, port, "", caKey))
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, timestampMax+1))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return t.result(flow, target, false, "GET metadata/timestamp.json: HTTP %s: is the URL the repository's public directory (metadata/ and targets/ under it)?", resp.Status)
	case resp.StatusCode != http.StatusOK:
		return t.result(flow, target, false, "GET metadata/timestamp.json: HTTP %s", resp.Status)
	case err != nil:
		return t.result(flow, target, false, "GET metadata/timestamp.json: HTTP %s, then reading the body: %s", resp.Status, describe(err, step))
	}
	return t.result(flow, target, true, "GET metadata/timestamp.json: HTTP %s, %d bytes in %s", resp.Status, n, fmtDur(time.Since(t.start)))
}

// ftpChecks checks the control connection with its login, then a passive
// data connection.
func ftpChecks(ctx context.Context, flow string, u *url.URL, step time.Duration) []Result {
	t := startTimer()
	shown := u.Redacted()
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "21")
	}
	_, port, _ := net.SplitHostPort(addr)
	user, pass := "anonymous", "anonymous"
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	d := &transport.FTPTrace{}
	defer d.CloseAll()
	control := shown + " (control)"
	c, err := transport.DialFTP(ctx, addr, user, pass, step, d)
	var le *transport.FTPLoginError
	switch {
	case errors.As(err, &le):
		return []Result{t.result(flow, control, false, "connected, but login as %s failed: %s", user, explainFTP(le.Err, step, port))}
	case err != nil:
		return []Result{t.result(flow, control, false, "%s", explainFTP(err, step, port))}
	}
	defer c.Quit()
	r1 := t.result(flow, control, true, "connected to %s and logged in as %s in %s", d.Control(), user, fmtDur(time.Since(t.start)))

	t = startTimer()
	data := shown + " (passive data)"
	path := strings.TrimRight(u.Path, "/") + "/metadata/timestamp.json"
	resp, _, err := c.Retr(path, 0)
	mode := d.Mode()
	if err != nil {
		te, reply := transport.FTPReply(err)
		dataAddr := d.Data()
		switch {
		case reply && dataAddr != "":
			return []Result{r1, t.result(flow, data, false, "data connection to %s (%s) opened, but RETR %s: FTP %d %s: is the URL the repository's public directory?", dataAddr, mode, path, te.Code, te.Msg)}
		case reply:
			return []Result{r1, t.result(flow, data, false, "entering passive mode failed: FTP %d %s", te.Code, te.Msg)}
		case dataAddr != "" && d.LastFailed():
			_, dport, _ := net.SplitHostPort(dataAddr)
			return []Result{r1, t.result(flow, data, false, "%s (%s)%s", describe(err, step), mode, passiveHint(err, dport))}
		}
		return []Result{r1, t.result(flow, data, false, "RETR %s (%s): %s", path, mode, explainFTP(err, step, port))}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp, timestampMax+1))
	cerr := resp.Close()
	switch {
	case err != nil:
		return []Result{r1, t.result(flow, data, false, "data connection to %s (%s) opened, but reading %s failed: %s", d.Data(), mode, path, describe(err, step))}
	case cerr != nil:
		return []Result{r1, t.result(flow, data, false, "data connection to %s (%s): transfer of %s not confirmed: %s", d.Data(), mode, path, explainFTP(cerr, step, port))}
	}
	return []Result{r1, t.result(flow, data, true, "data connection to %s (%s) carried %s (%d bytes) in %s", d.Data(), mode, path, n, fmtDur(time.Since(t.start)))}
}

// passiveHint is the advice for a passive data connection that failed.
func passiveHint(err error, port string) string {
	switch {
	case isTimeout(err):
		return " — is the FTP passive port range (here " + port + ") open from this machine to the server?"
	default:
		return " — is the FTP passive port range (here " + port + ") open, and does the server announce an address this machine can reach (-public-host)?"
	}
}

// explainFTP explains a failed FTP exchange on the control connection.
func explainFTP(err error, step time.Duration, port string) string {
	if te, ok := transport.FTPReply(err); ok {
		return fmt.Sprintf("FTP %d %s", te.Code, te.Msg)
	}
	s := describe(err, step)
	if h := hint(err, port); h != "" {
		return s + h
	}
	if errors.Is(err, io.EOF) {
		return s + " (the server closed the connection: connection limit, or not an FTP server?)"
	}
	return s
}
