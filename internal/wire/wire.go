// Package wire defines Vigil's signed envelope: the bytes the management
// server multicasts to agents (and serves again over HTTP to agents that
// missed them), how they are signed with Ed25519, and how an agent decodes
// and verifies them, with the beacon, command-reference and epoch-statement
// bodies. A command's body is bytes here: package command owns its format.
//
// The format is specified in docs/protocol.md; this package is its reference
// implementation. Every envelope has a fixed 48-byte header, a kind-specific
// body and a 64-byte Ed25519 signature over header and body:
//
//	off  len  field
//	  0    4  magic "VGL1"
//	  4    1  version (1)
//	  5    1  kind (1 command, 2 beacon, 3 command reference, 4 epoch statement)
//	  6    8  key id: first 8 bytes of SHA-256(public key)
//	 14    8  epoch (identifies the server's store; big-endian)
//	 22    8  sequence number (big-endian)
//	 30    8  issued at, Unix milliseconds (big-endian, signed)
//	 38    8  expires at, Unix milliseconds (big-endian, signed)
//	 46    2  body length N (big-endian)
//	 48    N  body
//	48+N  64  Ed25519 signature over bytes [0, 48+N)
package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Magic opens every envelope.
const Magic = "VGL1"

// Version is the only envelope version this package reads and writes.
const Version = 1

const (
	// HeaderSize is the size of the fixed header.
	HeaderSize = 48
	// SigSize is the size of the trailing Ed25519 signature.
	SigSize = ed25519.SignatureSize
	// MaxDatagram is the largest envelope Vigil puts in one UDP datagram.
	// Commands whose envelope is larger are announced by reference.
	MaxDatagram = 1200
	// MaxEnvelope is the largest envelope accepted at all (over HTTP).
	MaxEnvelope = 64 << 10
	// MaxBody is the largest body in any envelope.
	MaxBody = MaxEnvelope - HeaderSize - SigSize
)

// Kind says what an envelope carries.
type Kind uint8

const (
	// KindCommand carries a whole command in its body (JSON; package
	// command owns its format, wire treats it as bytes).
	KindCommand Kind = 1
	// KindBeacon carries the latest sequence number and timing hints.
	KindBeacon Kind = 2
	// KindRef announces a command too large for a datagram: its body is the
	// SHA-256 digest of the full command envelope, fetched over HTTP.
	KindRef Kind = 3
	// KindEpoch is an epoch statement: the server's signed word, to one
	// agent over HTTP, of the epoch it is in and the sequence after which
	// that agent starts (see EpochStatement). It never travels by multicast.
	KindEpoch Kind = 4

	maxKind = KindEpoch
)

func (k Kind) String() string {
	switch k {
	case KindCommand:
		return "command"
	case KindBeacon:
		return "beacon"
	case KindRef:
		return "ref"
	case KindEpoch:
		return "epoch"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Errors returned by Decode and Verify. Callers count drops by these.
var (
	ErrMalformed = errors.New("malformed envelope")
	ErrKey       = errors.New("signed by another key")
	ErrSignature = errors.New("bad signature")
	ErrExpired   = errors.New("expired")
)

// KeyID returns the 8-byte identifier of a public key.
func KeyID(pub ed25519.PublicKey) [8]byte {
	sum := sha256.Sum256(pub)
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}

// Header is the decoded fixed part of an envelope.
type Header struct {
	Kind    Kind
	KeyID   [8]byte
	Epoch   uint64
	Seq     uint64
	Issued  time.Time
	Expires time.Time
}

// Envelope is a decoded envelope. Raw holds the exact bytes it was decoded
// from (or encoded to), which is what is stored and re-served over HTTP.
type Envelope struct {
	Header
	Body []byte
	Sig  []byte
	Raw  []byte
}

// Sign encodes and signs an envelope with priv.
func Sign(priv ed25519.PrivateKey, h Header, body []byte) ([]byte, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("wire: body of %d bytes exceeds %d", len(body), MaxBody)
	}
	if h.Kind < KindCommand || h.Kind > maxKind {
		return nil, fmt.Errorf("wire: unknown kind %d", h.Kind)
	}
	h.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	buf := make([]byte, HeaderSize, HeaderSize+len(body)+SigSize)
	copy(buf[0:4], Magic)
	buf[4] = Version
	buf[5] = byte(h.Kind)
	copy(buf[6:14], h.KeyID[:])
	binary.BigEndian.PutUint64(buf[14:22], h.Epoch)
	binary.BigEndian.PutUint64(buf[22:30], h.Seq)
	binary.BigEndian.PutUint64(buf[30:38], uint64(h.Issued.UnixMilli()))
	binary.BigEndian.PutUint64(buf[38:46], uint64(h.Expires.UnixMilli()))
	binary.BigEndian.PutUint16(buf[46:48], uint16(len(body)))
	buf = append(buf, body...)
	return append(buf, ed25519.Sign(priv, buf)...), nil
}

// Decode parses b without checking its signature. The returned envelope
// aliases b. It fails with an error wrapping ErrMalformed on any structural
// problem, including trailing bytes.
func Decode(b []byte) (*Envelope, error) {
	if len(b) < HeaderSize+SigSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than header and signature", ErrMalformed, len(b))
	}
	if len(b) > MaxEnvelope {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(b), MaxEnvelope)
	}
	if string(b[0:4]) != Magic {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if b[4] != Version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrMalformed, b[4])
	}
	k := Kind(b[5])
	if k < KindCommand || k > maxKind {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrMalformed, b[5])
	}
	n := int(binary.BigEndian.Uint16(b[46:48]))
	if len(b) != HeaderSize+n+SigSize {
		return nil, fmt.Errorf("%w: body length %d does not match envelope size %d", ErrMalformed, n, len(b))
	}
	e := &Envelope{Raw: b}
	e.Kind = k
	copy(e.KeyID[:], b[6:14])
	e.Epoch = binary.BigEndian.Uint64(b[14:22])
	e.Seq = binary.BigEndian.Uint64(b[22:30])
	e.Issued = time.UnixMilli(int64(binary.BigEndian.Uint64(b[30:38])))
	e.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[38:46])))
	e.Body = b[HeaderSize : HeaderSize+n]
	e.Sig = b[HeaderSize+n:]
	return e, nil
}

// Verify decodes b and checks that it is signed by pub and not expired at
// now. Errors wrap ErrMalformed, ErrKey, ErrSignature or ErrExpired.
func Verify(b []byte, pub ed25519.PublicKey, now time.Time) (*Envelope, error) {
	e, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if e.KeyID != KeyID(pub) {
		return nil, fmt.Errorf("%w: key id %x", ErrKey, e.KeyID)
	}
	if !ed25519.Verify(pub, b[:len(b)-SigSize], e.Sig) {
		return nil, ErrSignature
	}
	if !now.Before(e.Expires) {
		return e, fmt.Errorf("%w: at %s", ErrExpired, e.Expires.UTC().Format(time.RFC3339))
	}
	return e, nil
}

// Digest is the SHA-256 digest of a whole envelope, used by KindRef.
func Digest(raw []byte) [32]byte { return sha256.Sum256(raw) }

// nameRE is a group name or agent id.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidName reports whether s is a valid group name or agent id: 1 to 64
// of [A-Za-z0-9._-].
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Beacon is the body of a KindBeacon envelope: 8 bytes, big-endian.
type Beacon struct {
	// IntervalMillis is how often the server sends beacons.
	IntervalMillis uint32
	// SpreadMillis is the window over which agents spread their replies.
	SpreadMillis uint32
}

// BeaconSize is the size of a beacon body.
const BeaconSize = 8

// EncodeBeacon returns a beacon body.
func EncodeBeacon(b Beacon) []byte {
	out := make([]byte, BeaconSize)
	binary.BigEndian.PutUint32(out[0:4], b.IntervalMillis)
	binary.BigEndian.PutUint32(out[4:8], b.SpreadMillis)
	return out
}

// DecodeBeacon parses a beacon body.
func DecodeBeacon(body []byte) (Beacon, error) {
	if len(body) != BeaconSize {
		return Beacon{}, fmt.Errorf("%w: beacon body is %d bytes, want %d", ErrMalformed, len(body), BeaconSize)
	}
	return Beacon{
		IntervalMillis: binary.BigEndian.Uint32(body[0:4]),
		SpreadMillis:   binary.BigEndian.Uint32(body[4:8]),
	}, nil
}

// DecodeRef parses a reference body: the SHA-256 digest of the command
// envelope with the same sequence number.
func DecodeRef(body []byte) ([32]byte, error) {
	var d [32]byte
	if len(body) != len(d) {
		return d, fmt.Errorf("%w: ref body is %d bytes, want %d", ErrMalformed, len(body), len(d))
	}
	copy(d[:], body)
	return d, nil
}

// Announcement builds the datagram that announces a signed command
// envelope: the envelope itself when it fits in MaxDatagram, otherwise a
// KindRef envelope with the same header fields carrying its digest.
func Announcement(priv ed25519.PrivateKey, cmdEnvelope []byte) ([]byte, error) {
	if len(cmdEnvelope) <= MaxDatagram {
		return cmdEnvelope, nil
	}
	e, err := Decode(cmdEnvelope)
	if err != nil {
		return nil, err
	}
	d := Digest(cmdEnvelope)
	h := e.Header
	h.Kind = KindRef
	return Sign(priv, h, d[:])
}

// EpochStatement is the body of a KindEpoch envelope (JSON). The envelope's
// header carries the epoch and, as its sequence, the latest command
// sequence when it was signed: the agent it is addressed to starts after
// that sequence (or after the highest it has handled in that epoch, when
// that is higher). Issued orders statements: an agent follows a statement
// only when it was issued after the one that put it in its current epoch,
// so a replayed statement can never move an agent back.
type EpochStatement struct {
	// Agent is the id of the agent the statement is for.
	Agent string `json:"agent"`
	// Nonce echoes the nonce of the enrollment request the statement
	// answers (hex); empty in a statement that moves an enrolled agent to
	// a new epoch.
	Nonce string `json:"nonce,omitempty"`
	// Previous is the epoch the server left, when the statement announces
	// a new epoch (informational: agents do not act on it).
	Previous uint64 `json:"previous,omitempty,string"`
}

// EncodeEpochStatement returns the JSON body of an epoch statement.
func EncodeEpochStatement(st EpochStatement) ([]byte, error) {
	if !nameRE.MatchString(st.Agent) {
		return nil, fmt.Errorf("wire: bad agent id %q", st.Agent)
	}
	if !nonceRE.MatchString(st.Nonce) {
		return nil, fmt.Errorf("wire: bad nonce %q", st.Nonce)
	}
	return json.Marshal(st)
}

// DecodeEpochStatement parses and validates an epoch statement body.
func DecodeEpochStatement(body []byte) (EpochStatement, error) {
	var st EpochStatement
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return EpochStatement{}, fmt.Errorf("%w: epoch statement: %v", ErrMalformed, err)
	}
	if dec.More() {
		return EpochStatement{}, fmt.Errorf("%w: epoch statement: trailing data", ErrMalformed)
	}
	if !nameRE.MatchString(st.Agent) {
		return EpochStatement{}, fmt.Errorf("%w: epoch statement: bad agent id %q", ErrMalformed, st.Agent)
	}
	if !nonceRE.MatchString(st.Nonce) {
		return EpochStatement{}, fmt.Errorf("%w: epoch statement: bad nonce %q", ErrMalformed, st.Nonce)
	}
	return st, nil
}

// nonceRE is an enrollment nonce (empty, or 32 to 64 lower-case hex digits).
var nonceRE = regexp.MustCompile(`^(|[0-9a-f]{32,64})$`)

// ValidNonce reports whether s is a valid enrollment nonce (32 to 64
// lower-case hex digits).
func ValidNonce(s string) bool { return s != "" && nonceRE.MatchString(s) }
