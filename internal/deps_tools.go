//go:build tools

// Package internal pins dependencies that packages under construction will
// import, so that go mod tidy keeps them. Removed once they are all in use.
package internal

import (
	_ "github.com/jlaffaye/ftp"
	_ "github.com/miekg/dns"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/theupdateframework/go-tuf/v2/metadata"
	_ "github.com/theupdateframework/go-tuf/v2/metadata/updater"
	_ "github.com/vbauerster/mpb/v8"
	_ "goftp.io/server/v2"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/net/ipv6"
	_ "howett.net/plist"
	_ "modernc.org/sqlite"
)
