package fanotify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// meta encodes one struct fanotify_event_metadata as the kernel writes it,
// followed by extra bytes of info records (eventLen counts them).
func meta(eventLen uint32, vers uint8, metaLen uint16, mask uint64, fd, pid int32, extra int) []byte {
	b := make([]byte, metadataLen+extra)
	binary.NativeEndian.PutUint32(b[0:], eventLen)
	b[4] = vers
	binary.NativeEndian.PutUint16(b[6:], metaLen)
	binary.NativeEndian.PutUint64(b[8:], mask)
	binary.NativeEndian.PutUint32(b[16:], uint32(fd))
	binary.NativeEndian.PutUint32(b[20:], uint32(pid))
	for i := metadataLen; i < len(b); i++ {
		b[i] = 0xEE
	}
	return b
}

// ev is a well-formed event of 24 bytes.
func ev(mask uint64, fd, pid int32) []byte {
	return meta(metadataLen, 3, metadataLen, mask, fd, pid, 0)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestParseEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		buf     []byte
		want    []rawEvent
		wantErr string // substring; "" for none
		version bool   // the error wraps ErrVersion
	}{
		{name: "empty", buf: nil},
		{
			name: "one open permission event",
			buf:  ev(fanOpenPerm, 7, 1234),
			want: []rawEvent{{off: 0, len: 24, mask: fanOpenPerm, fd: 7, pid: 1234}},
		},
		{
			name: "three events, the second with info records",
			buf:  cat(ev(fanOpen, 3, 10), meta(40, 3, 24, fanOpen|fanCloseWrite, 4, 11, 16), ev(fanOpenExecPerm, 5, 12)),
			want: []rawEvent{
				{off: 0, len: 24, mask: fanOpen, fd: 3, pid: 10},
				{off: 24, len: 40, mask: fanOpen | fanCloseWrite, fd: 4, pid: 11},
				{off: 64, len: 24, mask: fanOpenExecPerm, fd: 5, pid: 12},
			},
		},
		{
			name: "a longer metadata (a future version's fields) is skipped",
			buf:  meta(32, 3, 32, fanOpen, 3, 10, 8),
			want: []rawEvent{{off: 0, len: 32, mask: fanOpen, fd: 3, pid: 10}},
		},
		{
			name: "queue overflow: no file, no process",
			buf:  cat(ev(fanOpen, 3, 10), ev(fanQOverflow, noFD, 0)),
			want: []rawEvent{{off: 0, len: 24, mask: fanOpen, fd: 3, pid: 10}, {off: 24, len: 24, mask: fanQOverflow, fd: noFD, pid: 0}},
		},
		{
			name:    "version 2",
			buf:     meta(24, 2, 24, fanOpen, 3, 10, 0),
			wantErr: "has version 2, this package reads version 3", version: true,
		},
		{
			name:    "version 4 after a good event",
			buf:     cat(ev(fanOpen, 3, 10), meta(24, 4, 24, fanOpen, 4, 10, 0)),
			want:    []rawEvent{{off: 0, len: 24, mask: fanOpen, fd: 3, pid: 10}},
			wantErr: "event at byte 24 has version 4", version: true,
		},
		{
			name:    "truncated metadata",
			buf:     cat(ev(fanOpen, 3, 10), ev(fanOpen, 4, 10)[:20]),
			want:    []rawEvent{{off: 0, len: 24, mask: fanOpen, fd: 3, pid: 10}},
			wantErr: "event at byte 24: 20 bytes left",
		},
		{
			name:    "event length overruns the buffer",
			buf:     meta(48, 3, 24, fanOpen, 3, 10, 8),
			wantErr: "48 bytes long, overruns the 32 bytes left",
		},
		{
			name:    "huge event length",
			buf:     meta(0xFFFFFFFF, 3, 24, fanOpen, 3, 10, 0),
			wantErr: "overruns",
		},
		{
			name:    "zero event length cannot loop",
			buf:     meta(0, 3, 24, fanOpen, 3, 10, 0),
			wantErr: "0 bytes long, shorter than its 24 bytes of metadata",
		},
		{
			name:    "metadata shorter than the struct",
			buf:     meta(24, 3, 16, fanOpen, 3, 10, 0),
			wantErr: "metadata of 16 bytes",
		},
		{
			name:    "negative descriptor other than FAN_NOFD",
			buf:     ev(fanOpen, -13, 10),
			wantErr: "file descriptor -13",
		},
		{
			name:    "permission event without a file",
			buf:     ev(fanOpenPerm, noFD, 10),
			wantErr: "permission event (mask 0x10000) without a file descriptor",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEvents(tt.buf)
			if len(got) != len(tt.want) {
				t.Fatalf("parseEvents = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("event %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrVersion) != tt.version {
				t.Errorf("errors.Is(%v, ErrVersion) = %v, want %v", err, !tt.version, tt.version)
			}
		})
	}
}

func TestOpOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		mask uint64
		want Op
		str  string
	}{
		{fanOpenPerm, Open, "open"},
		{fanOpen, Open, "open"},
		{fanOpenExecPerm, Exec, "exec"},
		{fanOpen | fanOpenExec, Open | Exec, "open|exec"},
		{fanOpen | fanCloseWrite, Open | CloseWrite, "open|close-write"},
		{fanQOverflow, Overflow, "overflow"},
		{0x2, 0, "none"}, // FAN_MODIFY: not an Op of this package
	} {
		if got := opOf(tt.mask); got != tt.want || got.String() != tt.str {
			t.Errorf("opOf(%#x) = %v (%q), want %v (%q)", tt.mask, got, got.String(), tt.want, tt.str)
		}
	}
	if s := (Op(1 << 10)).String(); s != "0x400" {
		t.Errorf("unknown Op prints %q", s)
	}
}

// FuzzParseEvents checks parseEvents on any bytes: it never panics, every
// event it returns lies within the buffer, follows the previous one and
// says what the bytes say, the whole buffer is consumed when there is no
// error, a wrong version is refused with ErrVersion (and only a wrong
// version is), and FAN_NOFD appears only on events that need no answer.
func FuzzParseEvents(f *testing.F) {
	f.Add(ev(fanOpenPerm, 7, 1234))
	f.Add(cat(ev(fanOpen, 3, 10), meta(40, 3, 24, fanOpen|fanCloseWrite, 4, 11, 16), ev(fanOpenExecPerm, 5, 12)))
	f.Add(cat(ev(fanOpen, 3, 10), ev(fanQOverflow, noFD, 0)))
	f.Add(meta(24, 2, 24, fanOpen, 3, 10, 0))
	f.Add(meta(48, 3, 24, fanOpen, 3, 10, 8))
	f.Add(meta(0, 3, 24, fanOpen, 3, 10, 0))
	f.Add(meta(24, 3, 16, fanOpen, 3, 10, 0))
	f.Add(ev(fanOpenPerm, noFD, 10))
	f.Add(ev(fanOpen, 4, 10)[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := parseEvents(b)
		next := 0
		for i, e := range evs {
			if e.off != next || e.len < metadataLen || e.off+e.len > len(b) {
				t.Fatalf("event %d at %d, %d bytes: after byte %d of a %d-byte buffer", i, e.off, e.len, next, len(b))
			}
			m := b[e.off:]
			if m[4] != metadataVersion || int(binary.NativeEndian.Uint32(m)) != e.len ||
				binary.NativeEndian.Uint64(m[8:]) != e.mask ||
				int32(binary.NativeEndian.Uint32(m[16:])) != e.fd || int32(binary.NativeEndian.Uint32(m[20:])) != e.pid {
				t.Fatalf("event %d = %+v, not what its bytes % x say", i, e, m[:metadataLen])
			}
			if e.fd < noFD || (e.fd == noFD && e.mask&permMask != 0) {
				t.Fatalf("event %d: descriptor %d with mask %#x", i, e.fd, e.mask)
			}
			next = e.off + e.len
		}
		if err == nil {
			if next != len(b) {
				t.Fatalf("no error, but only %d of %d bytes parsed", next, len(b))
			}
			return
		}
		rest := b[next:]
		if len(rest) == 0 {
			t.Fatalf("error %v at the end of the buffer", err)
		}
		badVersion := len(rest) >= metadataLen && rest[4] != metadataVersion
		if errors.Is(err, ErrVersion) != badVersion {
			t.Fatalf("error %v for an event of version %d (%d bytes left)", err, rest[min(4, len(rest)-1)], len(rest))
		}
	})
}
