package transport

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFTP is a minimal FTP server for the fetcher's unit tests, with
// knobs the real server lacks: no EPSV, a stalling file, a wrong reply
// code. It listens (control and data) on 127.0.0.1 only.
type fakeFTP struct {
	t      *testing.T
	ln     net.Listener
	addr   string
	noEPSV bool

	mu    sync.Mutex
	files map[string][]byte
	stall map[string]int // path -> bytes sent before stalling
	cmds  []string

	conns atomic.Int32
	done  chan struct{}
	wg    sync.WaitGroup
}

func startFakeFTP(t *testing.T, files map[string][]byte, opts ...func(*fakeFTP)) *fakeFTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeFTP{t: t, ln: ln, addr: ln.Addr().String(), files: files,
		stall: map[string]int{}, done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		close(s.done)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *fakeFTP) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func (s *fakeFTP) serve(c net.Conn) {
	defer c.Close()
	go func() { <-s.done; c.Close() }()
	r := bufio.NewReader(c)
	reply := func(format string, args ...any) {
		fmt.Fprintf(c, format+"\r\n", args...)
	}
	var data net.Listener
	defer func() {
		if data != nil {
			data.Close()
		}
	}()
	reply("220 fake ftp")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		s.mu.Lock()
		s.cmds = append(s.cmds, cmd)
		s.mu.Unlock()
		switch cmd {
		case "USER":
			reply("331 password please")
		case "PASS":
			reply("230 logged in")
		case "FEAT":
			reply("211-Features:\r\n UTF8\r\n EPSV\r\n211 End")
		case "TYPE", "OPTS":
			reply("200 ok")
		case "EPSV", "PASV":
			if cmd == "EPSV" && s.noEPSV {
				reply("502 EPSV not implemented")
				continue
			}
			if data != nil {
				data.Close()
			}
			data, err = net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				reply("425 cannot listen")
				continue
			}
			port := data.Addr().(*net.TCPAddr).Port
			if cmd == "EPSV" {
				reply("229 Entering Extended Passive Mode (|||%d|)", port)
			} else {
				reply("227 Entering Passive Mode (127,0,0,1,%d,%d)", port/256, port%256)
			}
		case "RETR":
			if data == nil {
				reply("425 use PASV first")
				continue
			}
			s.mu.Lock()
			body, ok := s.files[arg]
			stallAt, stalls := s.stall[arg]
			s.mu.Unlock()

			dc, err := acceptTimeout(data, 5*time.Second)
			data.Close()
			data = nil
			if err != nil {
				reply("425 no data connection")
				continue
			}
			if !ok {
				dc.Close()
				reply("550 %s: No such file or directory", arg)
				continue
			}
			reply("150 opening data connection")
			if stalls {
				dc.Write(body[:stallAt])
				select {
				case <-s.done:
				case <-time.After(time.Minute):
				}
				dc.Close()
				return
			}
			_, werr := dc.Write(body)
			dc.Close()
			if werr != nil {
				reply("426 transfer aborted")
			} else {
				reply("226 transfer complete")
			}
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 %s not implemented", cmd)
		}
	}
}

func acceptTimeout(ln net.Listener, d time.Duration) (net.Conn, error) {
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(d))
	return ln.Accept()
}
