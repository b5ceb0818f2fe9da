package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/server"
	"github.com/vigil-fleet/vigil/internal/store/postgres"
	"github.com/vigil-fleet/vigil/internal/store/sqlite"
	"github.com/vigil-fleet/vigil/internal/store/storecopy"
)

func storeUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: vigil store COMMAND [flags]

Commands:
  migrate   copy a SQLite store into an empty PostgreSQL database and check the copy

Run 'vigil store COMMAND -h' for a command's flags.
`)
}

func runStore(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		storeUsage(env.Stderr)
		return usageError{errors.New("name a store command")}
	}
	switch args[0] {
	case "-h", "--help", "help":
		storeUsage(env.Stderr)
		return flag.ErrHelp
	case "migrate":
		return runStoreMigrate(ctx, env, args[1:])
	}
	storeUsage(env.Stderr)
	return usageError{fmt.Errorf("unknown store command %q", args[0])}
}

// runStoreMigrate is vigil store migrate: the SQLite store at -from, read
// only, copied into the empty PostgreSQL database -to names, the copy read
// back and compared before it is committed.
func runStoreMigrate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "store migrate", "-from FILE -to postgres://…")
	from := fs.String("from", "", "the SQLite store to copy (the server's data directory holds it as "+server.FileDatabase+"); it is opened read-only")
	var to config.StoreDSN
	fs.Var(&to, "to", "URL of the PostgreSQL database to fill; it must hold no store data (a new database, or one vigil server created and never used)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case *from == "":
		return usageError{errors.New("-from: name the SQLite store file to copy")}
	case to == "":
		return usageError{errors.New("-to: give the postgres:// URL of the database to fill")}
	}
	if err := to.Check(); err != nil {
		return usageError{fmt.Errorf("-to: %w", err)}
	}
	src, err := sqlite.OpenReadOnly(*from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, string(to))
	if err != nil {
		return fmt.Errorf("%s: %s", to.Where(), to.Scrub(err.Error()))
	}
	defer dst.Close()
	d, err := storecopy.Copy(ctx, src, dst)
	var mm *storecopy.MismatchError
	switch {
	case errors.As(err, &mm):
		return fmt.Errorf("the copy in %s does not read back as %s; nothing was committed. Differences:\n  %s",
			to.Where(), src.Path(), strings.Join(mm.Diffs, "\n  "))
	case errors.Is(err, storecopy.ErrNotEmpty):
		return fmt.Errorf("%s: %s; nothing was changed", to.Where(), to.Scrub(err.Error()))
	case err != nil:
		return fmt.Errorf("copying %s into %s: %s; nothing was committed", src.Path(), to.Where(), to.Scrub(err.Error()))
	}
	fmt.Fprintf(env.Stdout, "copied %s into %s\n", src.Path(), to.Where())
	fmt.Fprintf(env.Stdout, "  epoch %d, epoch start %d, command sequence at %d\n", d.Info.Epoch, d.Info.EpochStart, d.Info.LastSeq)
	for _, t := range storecopy.Tables {
		fmt.Fprintf(env.Stdout, "  %-10s %8d rows  SHA-256 %x\n", t, d.Counts[t], d.Sums[t][:8])
	}
	fmt.Fprintf(env.Stdout, "the copy reads back identical (row counts and SHA-256 of every table); start vigil server with -store %s\n", to.Redacted())
	return nil
}
