package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyStatement(t *testing.T) {
	t.Parallel()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	pin := key.Public().(ed25519.PublicKey)
	wrongPin := errors.New("the pin is wrong")
	now := time.Now()
	const nonce = "0123456789abcdef0123456789abcdef"
	sign := func(priv ed25519.PrivateKey, kind Kind, agent, nonce string, expires time.Time) []byte {
		t.Helper()
		body, err := EncodeEpochStatement(EpochStatement{Agent: agent, Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Sign(priv, Header{Kind: kind, Epoch: 7, Seq: 3, Issued: now.Add(-time.Minute), Expires: expires}, body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := sign(key, KindEpoch, "a1", nonce, now.Add(time.Hour))
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name      string
		b         []byte
		agent     string
		nonce     string
		wrongPin  bool
		wantError string
	}{
		{"good", good, "a1", nonce, false, ""},
		{"empty", nil, "a1", nonce, false, "carries no signed epoch statement"},
		{"another key", sign(other, KindEpoch, "a1", nonce, now.Add(time.Hour)), "a1", nonce, true, "Pin has key id"},
		{"altered", flipped, "a1", nonce, true, "does not verify under Pin"},
		{"expired", sign(key, KindEpoch, "a1", nonce, now.Add(-time.Second)), "a1", nonce, false, "expired at"},
		{"not a statement", sign(key, KindBeacon, "a1", nonce, now.Add(time.Hour)), "a1", nonce, false, "of kind"},
		{"another agent", good, "a2", nonce, false, `is for agent "a1", not "a2"`},
		{"replayed", good, "a1", "", false, "a replayed answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := VerifyStatement(tc.b, pin, "Pin", wrongPin, tc.agent, tc.nonce, now)
			if tc.wantError == "" {
				if err != nil || e.Epoch != 7 || e.Seq != 3 {
					t.Fatalf("got %+v, %v", e, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantError) || errors.Is(err, wrongPin) != tc.wrongPin {
				t.Fatalf("error %v: want %q, wrong pin %v", err, tc.wantError, tc.wrongPin)
			}
		})
	}
}
