package wire

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// VerifyStatement checks an epoch statement the server answers an
// enrollment or a check-in with, as every enrolled node (agent, relay)
// must: signed by the pinned key pin, of kind KindEpoch, unexpired at
// now, naming agent, and echoing nonce ("" for a statement that moves an
// enrolled node to a new epoch). A statement not signed by pin is an
// error wrapping wrongPin, the caller's mark of a wrong pin; pinName is
// the setting holding pin, for messages ("ServerPublicKey",
// "-server-key").
func VerifyStatement(b []byte, pin ed25519.PublicKey, pinName string, wrongPin error, agent, nonce string, now time.Time) (*Envelope, error) {
	if len(b) == 0 {
		return nil, errors.New("the server's answer carries no signed epoch statement: the server is older than this program, or something on the way removed it")
	}
	e, err := Verify(b, pin, now)
	switch {
	case errors.Is(err, ErrKey):
		return nil, fmt.Errorf("%w: %s has key id %x, the server signs with key id %x", wrongPin, pinName, KeyID(pin), headerOf(b).KeyID)
	case errors.Is(err, ErrSignature):
		return nil, fmt.Errorf("%w: the signature does not verify under %s (key id %x; the statement names key id %x, so it was altered on its way or signed by another key with that id)",
			wrongPin, pinName, KeyID(pin), headerOf(b).KeyID)
	case errors.Is(err, ErrExpired):
		return nil, fmt.Errorf("the server's epoch statement expired at %s (is this machine's clock right?)", e.Expires.UTC().Format(time.RFC3339))
	case err != nil:
		return nil, fmt.Errorf("the server's epoch statement: %w", err)
	case e.Kind != KindEpoch:
		return nil, fmt.Errorf("the server's epoch statement is an envelope of kind %s", e.Kind)
	}
	st, err := DecodeEpochStatement(e.Body)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the server's epoch statement: %w", err)
	case st.Agent != agent:
		return nil, fmt.Errorf("the server's epoch statement is for agent %q, not %q", st.Agent, agent)
	case st.Nonce != nonce:
		return nil, fmt.Errorf("the server's epoch statement answers another request (nonce %q, want %q): a replayed answer", st.Nonce, nonce)
	}
	return e, nil
}

// headerOf is the header of an envelope that decodes (one that fails only
// its signature or key check), for error messages.
func headerOf(b []byte) Header {
	e, err := Decode(b)
	if err != nil {
		return Header{}
	}
	return e.Header
}
