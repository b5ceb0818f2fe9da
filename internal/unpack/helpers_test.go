package unpack

import (
	"bytes"
	"context"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/vigil-fleet/vigil/internal/filetype"
)

// marker is what the tests look for in yielded objects (and what the
// differential test's signature matches).
const marker = "VIGILMARKER-7f3a9c"

var markerText = []byte("hello " + marker + " world\n")

// markerBz2 is markerText compressed by bzip2 -9.
var markerBz2 = mustHex("425a6839314159265359d8c7e84d00000bdf800010400208a022ae11002f4490802000314000d03264183134606354f106c85fcc21984f6000230ccaaef2e34f4d8bb9229c28486c63f42680")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// seen is one yielded object.
type seen struct {
	Path       string
	Depth      int
	Type       filetype.Type
	Containers []filetype.Type
	Size       int64
	Marker     bool
	Data       []byte
}

func walkBytes(t testing.TB, data []byte, opts Options) ([]seen, Result) {
	t.Helper()
	var got []seen
	res, err := Walk(context.Background(), bytes.NewReader(data), int64(len(data)), "f", opts, func(o *Object) error {
		b := make([]byte, o.Size)
		if _, err := o.R.ReadAt(b, 0); err != nil && o.Size > 0 {
			t.Fatalf("%s: read: %v", o.Path, err)
		}
		got = append(got, seen{Path: o.Path, Depth: o.Depth, Type: o.Type, Containers: slices.Clone(o.Containers), Size: o.Size, Marker: bytes.Contains(b, []byte(marker)), Data: b})
		if bytes.Contains(b, []byte(marker)) {
			return ErrDetected
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, res
}

func anyMarker(s []seen) bool {
	for _, o := range s {
		if o.Marker {
			return true
		}
	}
	return false
}
