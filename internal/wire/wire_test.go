package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pub(priv ed25519.PrivateKey) ed25519.PublicKey { return priv.Public().(ed25519.PublicKey) }

var t0 = time.UnixMilli(1_790_000_000_000)

// pingAll is a command body (package command owns its format; to wire it
// is bytes).
var pingAll = []byte(`{"name":"ping","target":{"all":true}}`)

func signedCommand(t testing.TB, priv ed25519.PrivateKey, seq uint64, body []byte, ttl time.Duration) []byte {
	t.Helper()
	b, err := Sign(priv, Header{Kind: KindCommand, Epoch: 7, Seq: seq, Issued: t0, Expires: t0.Add(ttl)}, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	priv := newKey(t)
	body := []byte(`{"name":"set","args":{"checkin_interval":"60"},"target":{"groups":["lab"]},"spread_ms":2000}`)
	b := signedCommand(t, priv, 42, body, time.Hour)
	if len(b) > MaxDatagram {
		t.Fatalf("small command is %d bytes", len(b))
	}
	e, err := Verify(b, pub(priv), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != KindCommand || e.Epoch != 7 || e.Seq != 42 || !e.Issued.Equal(t0) || !e.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("header mismatch: %+v", e.Header)
	}
	if !bytes.Equal(e.Body, body) {
		t.Fatalf("body %s, want %s", e.Body, body)
	}
}

func TestVerifyRejects(t *testing.T) {
	priv, other := newKey(t), newKey(t)
	good := signedCommand(t, priv, 1, pingAll, time.Hour)
	now := t0.Add(time.Minute)

	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	// A forger who knows the key id but not the key.
	forged := bytes.Clone(good)
	copy(forged[len(forged)-SigSize:], make([]byte, SigSize))

	tests := []struct {
		name string
		b    []byte
		key  ed25519.PublicKey
		now  time.Time
		want error
	}{
		{"empty", nil, pub(priv), now, ErrMalformed},
		{"short", good[:50], pub(priv), now, ErrMalformed},
		{"bad magic", flip(0), pub(priv), now, ErrMalformed},
		{"bad version", flip(4), pub(priv), now, ErrMalformed},
		{"bad kind", func() []byte { b := bytes.Clone(good); b[5] = 9; return b }(), pub(priv), now, ErrMalformed},
		{"length mismatch", flip(47), pub(priv), now, ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), pub(priv), now, ErrMalformed},
		{"truncated signature", good[:len(good)-1], pub(priv), now, ErrMalformed},
		{"other key", good, pub(other), now, ErrKey},
		{"tampered key id", flip(6), pub(priv), now, ErrKey},
		{"tampered epoch", flip(14), pub(priv), now, ErrSignature},
		{"tampered seq", flip(29), pub(priv), now, ErrSignature},
		{"tampered expiry", flip(45), pub(priv), now, ErrSignature},
		{"tampered body", flip(HeaderSize + 3), pub(priv), now, ErrSignature},
		{"tampered signature", flip(len(good) - 1), pub(priv), now, ErrSignature},
		{"forged signature", forged, pub(priv), now, ErrSignature},
		{"expired", good, pub(priv), t0.Add(time.Hour), ErrExpired},
		{"long expired", good, pub(priv), t0.Add(48 * time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.b, tt.key, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignedByOtherKeyWithSameID(t *testing.T) {
	// An attacker re-signs a valid envelope with their own key but keeps the
	// victim's key id: the signature must fail.
	priv, attacker := newKey(t), newKey(t)
	good := signedCommand(t, priv, 1, pingAll, time.Hour)
	b := bytes.Clone(good)
	body := b[:len(b)-SigSize]
	copy(b[len(b)-SigSize:], ed25519.Sign(attacker, body))
	if _, err := Verify(b, pub(priv), t0); !errors.Is(err, ErrSignature) {
		t.Fatalf("got %v", err)
	}
}

func TestAnnouncementRef(t *testing.T) {
	priv := newKey(t)
	agents := make([]string, 80)
	for i := range agents {
		agents[i] = strings.Repeat("a", 30) + string(rune('A'+i%26)) + string(rune('a'+i/26))
	}
	big := signedCommand(t, priv, 9, []byte(`{"name":"ping","target":{"agents":["`+strings.Join(agents, `","`)+`"]}}`), time.Hour)
	if len(big) <= MaxDatagram {
		t.Fatalf("test command too small: %d", len(big))
	}
	ann, err := Announcement(priv, big)
	if err != nil {
		t.Fatal(err)
	}
	if len(ann) > MaxDatagram {
		t.Fatalf("announcement %d bytes", len(ann))
	}
	e, err := Verify(ann, pub(priv), t0)
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != KindRef || e.Seq != 9 || e.Epoch != 7 {
		t.Fatalf("bad ref header %+v", e.Header)
	}
	d, err := DecodeRef(e.Body)
	if err != nil || d != Digest(big) {
		t.Fatalf("digest mismatch: %v", err)
	}
	small := signedCommand(t, priv, 10, pingAll, time.Hour)
	if ann, _ := Announcement(priv, small); !bytes.Equal(ann, small) {
		t.Fatal("small command not announced as itself")
	}
}

func TestBeacon(t *testing.T) {
	priv := newKey(t)
	b, err := Sign(priv, Header{Kind: KindBeacon, Epoch: 1, Seq: 5, Issued: t0, Expires: t0.Add(time.Minute)}, EncodeBeacon(Beacon{IntervalMillis: 30000, SpreadMillis: 5000}))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Verify(b, pub(priv), t0)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := DecodeBeacon(e.Body)
	if err != nil || bc.IntervalMillis != 30000 || bc.SpreadMillis != 5000 {
		t.Fatalf("beacon %+v %v", bc, err)
	}
	if _, err := DecodeBeacon(e.Body[:7]); !errors.Is(err, ErrMalformed) {
		t.Fatal("short beacon accepted")
	}
}

func FuzzDecode(f *testing.F) {
	priv := newKey(f)
	f.Add(signedCommand(f, priv, 1, pingAll, time.Hour))
	bc, _ := Sign(priv, Header{Kind: KindBeacon, Seq: 3, Issued: t0, Expires: t0.Add(time.Minute)}, EncodeBeacon(Beacon{1, 2}))
	f.Add(bc)
	f.Add([]byte("VGL1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(e.Raw) != HeaderSize+len(e.Body)+SigSize {
			t.Fatalf("inconsistent sizes")
		}
		switch e.Kind {
		case KindBeacon:
			_, _ = DecodeBeacon(e.Body)
		case KindRef:
			_, _ = DecodeRef(e.Body)
		}
		// Nothing a fuzzer builds verifies under a key it does not hold.
		if _, err := Verify(b, pub(priv), t0); err == nil && !bytes.HasPrefix(b, []byte(Magic)) {
			t.Fatal("verified without magic")
		}
	})
}

func TestEpochStatement(t *testing.T) {
	t.Parallel()
	priv := newKey(t)
	nonce := strings.Repeat("ab", 16)
	body, err := EncodeEpochStatement(EpochStatement{Agent: "3f2a9c0d11e4b7a2", Nonce: nonce, Previous: 1 << 60})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Sign(priv, Header{Kind: KindEpoch, Epoch: 9, Seq: 41, Issued: t0, Expires: t0.Add(time.Minute)}, body)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Verify(b, pub(priv), t0)
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != KindEpoch || e.Kind.String() != "epoch" || e.Epoch != 9 || e.Seq != 41 {
		t.Fatalf("header %+v", e.Header)
	}
	st, err := DecodeEpochStatement(e.Body)
	if err != nil {
		t.Fatal(err)
	}
	if st != (EpochStatement{Agent: "3f2a9c0d11e4b7a2", Nonce: nonce, Previous: 1 << 60}) {
		t.Fatalf("statement %+v", st)
	}
	if !ValidNonce(nonce) || ValidNonce("") || ValidNonce("AB"+nonce[2:]) || ValidNonce(nonce[:30]) {
		t.Fatal("ValidNonce")
	}
	for _, bad := range []string{
		`{"agent":"a b"}`,
		`{"agent":"x","nonce":"zz"}`,
		`{"agent":"x","extra":1}`,
		`{"agent":"x"} {}`,
		`{"nonce":"` + nonce + `"}`,
		`[]`,
	} {
		if _, err := DecodeEpochStatement([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := EncodeEpochStatement(EpochStatement{Agent: "x", Nonce: "12"}); err == nil {
		t.Error("EncodeEpochStatement accepted a short nonce")
	}
	// Kind 5 is still unknown.
	b[5] = 5
	if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("kind 5: %v", err)
	}
}
