// Package transport fetches the files of a TUF repository's public
// directory from a LiveUpdate server over ftp://, http:// or https://, for
// every client of the repository: the agents' definitions updates, the
// mirror and `vigil doctor`.
//
// It owns go-tuf's fetcher.Fetcher implementations (FTPFetcher,
// HTTPFetcher, NewFetcher; FileFetcher for file:// copies on disk), the
// streaming, resumable reads the mirror needs for large targets (Stream),
// Vigil's one FTP client (DialFTP, FTPConn; FTPTrace for `vigil doctor`),
// the errors every client tests for (IsNotFound:
// a missing file reads as go-tuf's HTTP 404 whatever the protocol, so that
// "no newer root" works over FTP too; IsTooLong: a file longer than
// allowed is never read past its limit), and the slow-retrieval defence
// (RateLimits, Meter, Budget, BudgetFetcher; IsSlow): a transfer below the
// minimum rate, or a session past its deadline, is abandoned.
//
// The repository's layout is specified in docs/repository.md, the
// slow-retrieval limits in docs/agent-preferences.md and docs/mirror.md.
package transport
