package cvd

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// ClamAV's published public keys, from libclamav/dsig.c (CLI_NSTR,
// CLI_ESTR: the key of the header's signature) and libclamav/readdb.c
// (INFO_NSTR, INFO_ESTR: the key of the .info DSIG line).
const (
	clamavCVDN  = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037"
	clamavCVDE  = 100001027
	clamavInfoN = "11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977"
	clamavInfoE = 100002049
)

// Keys are the public keys a container is checked against.
type Keys struct {
	CVD  *rsa.PublicKey // the header's signature (.cvd)
	Info *rsa.PublicKey // the .info DSIG line (.cvd, .cld); 2048 bits
}

// ClamAVKeys are ClamAV's published keys, which sign the databases
// ClamAV distributes.
func ClamAVKeys() Keys {
	n1, _ := new(big.Int).SetString(clamavCVDN, 10)
	n2, _ := new(big.Int).SetString(clamavInfoN, 10)
	return Keys{CVD: &rsa.PublicKey{N: n1, E: clamavCVDE}, Info: &rsa.PublicKey{N: n2, E: clamavInfoE}}
}

// KeysOf are the keys of a vendor that signs both the header and the
// .info with one key (Write does): a key of 2048 bits.
func KeysOf(pub *rsa.PublicKey) Keys { return Keys{CVD: pub, Info: pub} }

// ParsePublicKey reads an RSA public key in PEM: "PUBLIC KEY" (PKIX) or
// "RSA PUBLIC KEY" (PKCS #1).
func ParsePublicKey(b []byte) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("RSA public key: no PEM block")
	}
	switch blk.Type {
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(blk.Bytes)
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("RSA public key: %w", err)
		}
		pub, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key: %T, want RSA", k)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("RSA public key: PEM block %q, want PUBLIC KEY or RSA PUBLIC KEY", blk.Type)
}

// MarshalPublicKey writes pub as a PEM "PUBLIC KEY" (PKIX).
func MarshalPublicKey(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
