package definitions

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
)

// sigDB is a generated signature database the shape of ClamAV's: hash
// signatures (80 % MD5 in main.hdb, 10 % SHA-256 in main.hsb) and body
// signatures (10 %, main.ndb, random bytes with ClamAV's pattern forms).
// Each signature has a generation; a new release bumps the generation of
// some, which gives them new content (a signature replaced: removed and
// another added in its place).
type sigDB struct {
	gen  []uint16
	seed uint64
}

func newSigDB(n int, seed uint64) *sigDB { return &sigDB{gen: make([]uint16, n), seed: seed} }

// next changes frac of the signatures, chosen at random.
func (db *sigDB) next(frac float64, seed uint64) {
	rng := rand.New(rand.NewPCG(db.seed, seed))
	n := int(float64(len(db.gen)) * frac)
	for range n {
		db.gen[rng.IntN(len(db.gen))]++
	}
}

// files returns the release's signature files.
func (db *sigDB) files() map[string][]byte {
	var hdb, hsb, ndb bytes.Buffer
	hdb.Grow(len(db.gen) * 70)
	var raw [64]byte
	for i, g := range db.gen {
		rng := rand.New(rand.NewPCG(db.seed^uint64(i), uint64(g)))
		random := func(n int) []byte {
			for j := range n {
				raw[j] = byte(rng.Uint32())
			}
			return raw[:n]
		}
		switch k := i % 10; {
		case k < 8:
			fmt.Fprintf(&hdb, "%x:%d:Gen.Trojan.Hash-%07d-%d\n", random(16), 1+rng.IntN(4<<20), i, g)
		case k == 8:
			fmt.Fprintf(&hsb, "%x:%d:Gen.Trojan.Sha-%07d-%d\n", random(32), 1+rng.IntN(4<<20), i, g)
		default:
			fmt.Fprintf(&ndb, "Gen.Trojan.Body-%07d-%d:0:*:%s", i, g, hex.EncodeToString(random(8+rng.IntN(24))))
			switch i % 7 {
			case 1:
				ndb.WriteString("??")
			case 2:
				fmt.Fprintf(&ndb, "{%d-%d}", rng.IntN(8), 8+rng.IntN(32))
			case 3:
				fmt.Fprintf(&ndb, "(%x|%x)", random(2), random(2))
			case 4:
				ndb.WriteString("*")
			}
			ndb.WriteString(hex.EncodeToString(random(6 + rng.IntN(24))))
			ndb.WriteByte('\n')
		}
	}
	return map[string][]byte{"main.hdb": hdb.Bytes(), "main.hsb": hsb.Bytes(), "main.ndb": ndb.Bytes()}
}
