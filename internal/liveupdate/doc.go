// Package liveupdate is Vigil's LiveUpdate server: one process that serves a
// definitions repository, read-only, over HTTP and FTP at once.
//
// # The repository and its root
//
// Every file is opened through an [os.Root] on Config.Root, so no path,
// symlink or encoding trick reaches a file outside it: os.Root refuses ".."
// that would climb out, absolute symlinks, and relative symlinks that leave
// the root. Symlinks whose targets stay inside the root are followed; that
// is deliberate (a repository may link a stable name to a versioned file)
// and safe, because the target is still under the root. On top of os.Root
// both protocols check each requested path before it reaches the file
// system: a path with a ".." or "." segment, an empty segment, a NUL or
// other control byte, or a backslash is refused as malformed; a path with
// any segment starting with "." (a dotfile or dot-directory) is answered as
// not found, and such names never appear in listings. Only regular files
// and directories are served: FIFOs, sockets and devices are not, and they
// are opened non-blocking so that a FIFO cannot stall the server.
//
// # Private keys
//
// The root to serve is a repository's public/ folder. The repository
// directory beside it holds the vendor's private keys in keys/, and New
// refuses a root that holds keys (keys.go): the root being a repository
// directory or a keys/ directory, or holding, among the first 20,000
// entries of a breadth-first look, a keys/ directory, a "*.key" file or a
// small file that starts as a PEM private key. The *PrivateKeyError names
// the public/ folder to serve instead. Per request, as a second line of
// defence, a path with a "keys" or "*.key" segment is not found and never
// listed, and a small regular file that starts as a PEM private key is not
// served, whatever its name or the symlink that reached it.
//
// Nothing writes. HTTP allows GET and HEAD only (405 otherwise); FTP refuses
// STOR, STOU, APPE, DELE, RNFR, RNTO, MKD, RMD and SITE with 550, and the FTP
// driver's write methods return errors as a second line of defence.
//
// # HTTP
//
// Files are served with [http.ServeContent]: byte ranges (including
// If-Range), HEAD, Last-Modified, and a strong ETag made of the file's
// modification time and size, so If-None-Match and If-Modified-Since get 304.
// The ETag is the same for every file, TUF hash-prefixed targets included:
// it describes the bytes on disk, which a name-derived hash would not if the
// file were ever damaged. Cache-Control follows TUF: files whose names start
// with a SHA-256 or SHA-512 hex digest and a dot (consistent-snapshot
// targets) or with a version number and a dot ("3.root.json") never change,
// and get "public, max-age=31536000, immutable"; everything else
// (timestamp.json, root.json, unversioned metadata, listings) gets
// "no-cache", so caches revalidate with the ETag every time. Directories are
// listed as a small HTML page (a path without its trailing slash is
// redirected to it), which is what HTTP mirroring tools read.
//
// The HTTP server is this package's own HTTP/1.1 connection loop
// (httpserver.go), not net/http's server, which costs a third more CPU per
// small file than nginx: requests are parsed by http.ReadRequest and answered
// by http.ServeContent, so the semantics are net/http's, and the checks
// net/http's server adds (Host header, header syntax and size) are made too.
// The commonest request, a plain GET or HEAD of a file with no range, no
// condition and no body, takes a fast path (fastpath.go) that answers it
// from the buffered header without allocating, with the response
// ServeContent would give; anything else, or anything it does not fully
// understand, takes the path above. Files go out with sendfile, the header
// in the same TCP segments (MSG_MORE).
//
// # FTP
//
// FTP runs on goftp.io/server/v2 with a read-only driver. Logins are
// anonymous only: USER anonymous or ftp with any password; other user names
// get 530. Transfers use passive mode only, PASV and EPSV, on ports from
// Config.PassivePorts; the address announced by PASV is Config.PublicHost, or
// the control connection's local address. A passive data connection is
// accepted only from the client's own address. RETR honours REST (resume);
// SIZE, MDTM, MLST, MLSD, LIST and NLST are supported, with times in UTC.
// Active mode (PORT, EPRT) is refused: it would make the server connect out
// to addresses that clients choose.
//
// goftp's own data path is replaced (see ftp.go for why): PASV, EPSV, REST,
// RETR, LIST, NLST, MLSD, MLST, SIZE, MDTM, FEAT and the refusals are this
// package's commands, while goftp parses the control connection and handles
// login, CWD and PWD.
//
// # Limits and timeouts
//
// Each protocol accepts at most Config.MaxConns connections and
// Config.MaxConnsPerIP from one address; a connection beyond a limit gets
// "503" (HTTP) or "421" (FTP) and is closed, except that an HTTP keep-alive
// connection that is idle is closed to make room first. An HTTP keep-alive
// connection or an FTP control connection waiting for a command is closed
// after Config.IdleTimeout; a request header or an FTP command line must
// arrive within Config.ReadTimeout once started, and a command line is at
// most 4 KiB. Writes must make progress: every write, and every 256 KiB of a
// file, must be accepted by the client within Config.WriteTimeout. Files are
// streamed with sendfile, never read whole, so memory does not grow with file
// size.
//
// # Access log
//
// With Config.AccessLog set, the server writes one line per HTTP request and
// per FTP transfer, login, refused command or failed command, in the Common
// Log Format followed by the protocol and the duration in seconds. Lines are
// buffered and written every second, when 64 KiB have gathered, and at
// shutdown:
//
//	127.0.0.1 - - [02/Jan/2026:15:04:05 +0000] "GET /3.root.json HTTP/1.1" 200 1834 http 0.000212
//	127.0.0.1 - anonymous [02/Jan/2026:15:04:06 +0000] "RETR /targets/x.tar" 226 4194304 ftp 0.012873
//
// The quoted request escapes '"', '\' and bytes outside printable ASCII as
// in Apache's logs, so a client cannot forge lines.
package liveupdate
