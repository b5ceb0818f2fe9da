package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client calls one of Vigil's HTTP APIs: Call sends a request to a route
// of the table (routes.go). AgentClient and AdminClient are its typed
// forms, one method per route.
type Client struct {
	// Base is the API base URL (NodeCommURL for agents, the admin URL for
	// administrators), without a trailing slash.
	Base string
	// Auth is the bearer credential sent with each request, if any.
	Auth string
	// HTTP is the client to use; http.DefaultClient when nil.
	HTTP *http.Client
	// UserAgent is sent with each request when set.
	UserAgent string
}

// MaxResponse bounds any response body a client reads.
const MaxResponse = 32 << 20

// Call sends in (JSON, nil for none) to route r, its wildcards replaced
// by params and with query q, and decodes the response into out: JSON,
// or the raw body when out is a *[]byte, or the body copied as it comes
// (not bounded by MaxResponse) when out is an io.Writer, or nothing when
// out is nil.
// Non-2xx answers return *HTTPError.
func (c *Client) Call(ctx context.Context, r Route, q url.Values, in, out any, params ...string) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL(c.Base, q, params...), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.Auth)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rd := io.LimitReader(resp.Body, MaxResponse)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e Error
		b, _ := io.ReadAll(rd)
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &HTTPError{Code: resp.StatusCode, Message: e.Error, Reason: e.Reason}
	}
	switch out := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, rd)
		return err
	case *[]byte:
		*out, err = io.ReadAll(rd)
		return err
	case io.Writer:
		_, err = io.Copy(out, resp.Body)
		return err
	}
	if err := json.NewDecoder(rd).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s response: %w", r.Method, r.Pattern, err)
	}
	return nil
}

// AgentClient is an agent's client of the agent API (docs/protocol.md §2).
// Base is the agent's NodeCommURL; Auth its credential, once enrolled.
type AgentClient struct {
	Client
}

// Enroll asks for an identity (POST /v1/enroll).
func (c *AgentClient) Enroll(ctx context.Context, req EnrollRequest) (EnrollResponse, error) {
	var resp EnrollResponse
	err := c.Call(ctx, RouteEnroll, nil, req, &resp)
	return resp, err
}

// CheckIn reports to the server (POST /v1/checkin).
func (c *AgentClient) CheckIn(ctx context.Context, req CheckInRequest) (CheckInResponse, error) {
	var resp CheckInResponse
	err := c.Call(ctx, RouteCheckIn, nil, req, &resp)
	return resp, err
}

// CommandsAfter fetches the command envelopes after sequence after, at
// most limit of them (0: the server's default) (GET /v1/commands).
func (c *AgentClient) CommandsAfter(ctx context.Context, after uint64, limit int) (CommandsResponse, error) {
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var resp CommandsResponse
	err := c.Call(ctx, RouteCommands, q, nil, &resp)
	return resp, err
}

// Command fetches the raw envelope of command seq (GET /v1/commands/{seq}).
func (c *AgentClient) Command(ctx context.Context, seq uint64) ([]byte, error) {
	var raw []byte
	err := c.Call(ctx, RouteCommand, nil, nil, &raw, strconv.FormatUint(seq, 10))
	return raw, err
}

// PostResults sends a batch of results (POST /v1/results) and returns
// the server's verdict on each.
func (c *AgentClient) PostResults(ctx context.Context, results []Result) (ResultsResponse, error) {
	var resp ResultsResponse
	err := c.Call(ctx, RouteResults, nil, ResultsRequest{Results: results}, &resp)
	return resp, err
}

// PostScan sends a scan report (POST /v1/scans).
func (c *AgentClient) PostScan(ctx context.Context, rep ScanReport) (ScanAck, error) {
	var ack ScanAck
	err := c.Call(ctx, RouteScans, nil, rep, &ack)
	return ack, err
}

// AdminClient is an administrator's client of the admin API
// (docs/protocol.md §3). Base is the admin URL; Auth the admin token.
type AdminClient struct {
	Client
}

// Send issues a command (POST /admin/v1/commands).
func (c *AdminClient) Send(ctx context.Context, req SendRequest) (CommandInfo, error) {
	var info CommandInfo
	err := c.Call(ctx, RouteAdminSend, nil, req, &info)
	return info, err
}

// Agents lists the enrolled agents (GET /admin/v1/agents).
func (c *AdminClient) Agents(ctx context.Context) ([]AgentInfo, error) {
	var agents []AgentInfo
	err := c.Call(ctx, RouteAdminAgents, nil, nil, &agents)
	return agents, err
}

// RemoveAgent removes an agent (DELETE /admin/v1/agents/{id}).
func (c *AdminClient) RemoveAgent(ctx context.Context, id string) error {
	return c.Call(ctx, RouteAdminRemoveAgent, nil, nil, nil, id)
}

// RevokeAgent revokes an agent (POST /admin/v1/agents/{id}/revoke) and
// returns it as revoked.
func (c *AdminClient) RevokeAgent(ctx context.Context, id string) (AgentInfo, error) {
	var a AgentInfo
	err := c.Call(ctx, RouteAdminRevokeAgent, nil, nil, &a, id)
	return a, err
}

// ListCommands lists the newest commands, at most limit (0: the server's
// default) (GET /admin/v1/commands).
func (c *AdminClient) ListCommands(ctx context.Context, limit int) ([]CommandInfo, error) {
	var cs []CommandInfo
	err := c.Call(ctx, RouteAdminCommands, limitQuery("", limit), nil, &cs)
	return cs, err
}

// CommandResults is command seq with its per-agent results
// (GET /admin/v1/commands/{seq}).
func (c *AdminClient) CommandResults(ctx context.Context, seq uint64) (CommandResults, error) {
	var res CommandResults
	err := c.Call(ctx, RouteAdminCommandResults, nil, nil, &res, strconv.FormatUint(seq, 10))
	return res, err
}

// Detections lists detections, newest first, of one agent (or all, for
// ""), at most limit (0: the server's default) (GET /admin/v1/detections).
func (c *AdminClient) Detections(ctx context.Context, agent string, limit int) ([]DetectionInfo, error) {
	var ds []DetectionInfo
	err := c.Call(ctx, RouteAdminDetections, limitQuery(agent, limit), nil, &ds)
	return ds, err
}

// Scans lists scan summaries, newest first, of one agent (or all, for
// ""), at most limit (0: the server's default) (GET /admin/v1/scans).
func (c *AdminClient) Scans(ctx context.Context, agent string, limit int) ([]ScanInfo, error) {
	var ss []ScanInfo
	err := c.Call(ctx, RouteAdminScans, limitQuery(agent, limit), nil, &ss)
	return ss, err
}

// ServerInfo describes the server (GET /admin/v1/server).
func (c *AdminClient) ServerInfo(ctx context.Context) (ServerInfo, error) {
	var info ServerInfo
	err := c.Call(ctx, RouteAdminServer, nil, nil, &info)
	return info, err
}

// limitQuery is ?agent=ID&limit=N, each only when set.
func limitQuery(agent string, limit int) url.Values {
	q := url.Values{}
	if agent != "" {
		q.Set("agent", agent)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}
