package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/proxy"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

// Exit statuses; see doc.go.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // bad command line or bad configuration, as flag uses
)

func main() {
	// Milliseconds matter when reading a failover from the logs. This is
	// zerolog's process-wide format setting, not a global logger.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// Give the signals back their default action, so that a second one
		// kills the process even if the shutdown hangs.
		stop()
	}()
	code := runMain(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stopProfile()
	os.Exit(code)
}

// runMain is the whole command behind main, without process globals: args
// excludes the program name, environ holds "NAME=value" entries, and the
// result is the exit status.
func runMain(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cmd, rest := "", args
	if len(args) > 0 {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "":
		return cmdRun(ctx, environ, stderr)
	case "config":
		return cmdConfig(rest, environ, stdout, stderr)
	case "status":
		return cmdStatus(ctx, rest, environ, stdout, stderr)
	case "version":
		if len(rest) > 0 {
			return usageError(stderr, "version takes no arguments")
		}
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	default:
		return usageError(stderr, fmt.Sprintf("unknown command %q", cmd))
	}
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "replicar: %s\n\n", msg)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: replicar [command]

replicar adds replication and automatic failover to Redis and MySQL. Run one
next to each store, point clients at it, and configure it with REPLICAR_*
environment variables.

Commands:
  (none)           run a node
  config [--json]  print the effective configuration, secrets masked
  status [--addr HOST:PORT] [--watch] [--json]
                   show every member of the group, asking any node
  version          print the version, commit and Go version
  help             print this help

Environment (default):
`)
	vars := proxy.Vars()
	width := 0
	for _, v := range vars {
		width = max(width, len(v.Env()))
	}
	for _, v := range vars {
		line := fmt.Sprintf("  %-*s  %s", width, v.Env(), v.DefaultDoc)
		if len(v.Allowed) > 0 {
			line += "  (" + strings.Join(v.Allowed, "|") + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	fmt.Fprint(w, `
Exit status: 0 on success or a clean shutdown, 1 if the node fails,
2 for a usage error or invalid configuration.
`)
}

// loadOrReport loads the configuration and reports problems on stderr: one
// line per bad variable, and the warnings when warn is true (the run command
// logs them through its logger instead).
func loadOrReport(environ []string, stderr io.Writer, warn bool) (proxy.Config, []string, bool) {
	cfg, warnings, errs := loadConfig(environ)
	if warn || len(errs) > 0 {
		for _, w := range warnings {
			fmt.Fprintf(stderr, "replicar: warning: %s\n", w)
		}
		warnings = nil
	}
	for _, err := range errs {
		fmt.Fprintf(stderr, "replicar: %v\n", err)
	}
	return cfg, warnings, len(errs) == 0
}

// cmdRun runs a node until ctx is done.
func cmdRun(ctx context.Context, environ []string, stderr io.Writer) int {
	cfg, warnings, ok := loadOrReport(environ, stderr, false)
	if !ok {
		return exitUsage
	}
	logger := newLogger(cfg, stderr)
	for _, w := range warnings {
		logger.Warn().Msg(w)
	}
	logger.Info().
		Str("version", version).
		Str("commit", commitString()).
		Dict("config", configDict(cfg.Masked())).
		Msg("starting replicar")
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error().Err(err).Msg("node failed")
		return exitFailure
	}
	logger.Info().Msg("stopped")
	return exitOK
}

// run is where the node runs: it returns nil after a clean shutdown once ctx
// is done, or the error that stopped the node.
func run(ctx context.Context, cfg proxy.Config, logger zerolog.Logger) error {
	err := proxy.Run(ctx, cfg, logger)
	if ctx.Err() != nil {
		logger.Info().Str("reason", context.Cause(ctx).Error()).Msg("shut down")
	}
	return err
}

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT. It is
// passed down explicitly; nothing uses zerolog's global logger.
func newLogger(cfg proxy.Config, w io.Writer) zerolog.Logger {
	if cfg.LogFormat == proxy.LogConsole {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}
	}
	// The node logs from many goroutines; a writer that is not safe for
	// concurrent use (a pipe wrapper, a buffer) must see one event at a time.
	w = zerolog.SyncWriter(w)
	return zerolog.New(w).
		Level(logLevel(cfg.LogLevel)).
		With().Timestamp().
		Str("node", cfg.NodeID).
		Str("group", cfg.Group).
		Logger()
}

func logLevel(l proxy.LogLevel) zerolog.Level {
	switch l {
	case proxy.LogTrace:
		return zerolog.TraceLevel
	case proxy.LogDebug:
		return zerolog.DebugLevel
	case proxy.LogWarn:
		return zerolog.WarnLevel
	case proxy.LogError:
		return zerolog.ErrorLevel
	default:
		return zerolog.InfoLevel
	}
}

// isTerminal reports whether w is a character device, where console colors
// make sense; in a pipe or a file they would be escape-code noise.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// configDict is the configuration as one log field, keyed by lower-case
// variable names. Pass a masked config.
func configDict(cfg proxy.Config) *zerolog.Event {
	d := zerolog.Dict()
	for _, v := range proxy.Vars() {
		d.Str(strings.ToLower(v.Name), cfg.Value(v.Name))
	}
	return d
}

// cmdConfig prints the effective configuration as REPLICAR_NAME=value lines
// in contract order, which a shell or an env file reads back, or with --json
// as one JSON object with the same keys and string values.
func cmdConfig(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replicar config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "config takes no arguments besides --json")
	}
	cfg, _, ok := loadOrReport(environ, stderr, true)
	if !ok {
		return exitUsage
	}
	m := cfg.Masked()
	var out bytes.Buffer
	if *asJSON {
		// Built by hand to keep contract order; a map would sort the keys.
		out.WriteString("{\n")
		for i, v := range proxy.Vars() {
			k, _ := json.Marshal(v.Env())
			val, _ := json.Marshal(m.Value(v.Name))
			sep := ","
			if i == len(proxy.Vars())-1 {
				sep = ""
			}
			fmt.Fprintf(&out, "  %s: %s%s\n", k, val, sep)
		}
		out.WriteString("}\n")
	} else {
		for _, v := range proxy.Vars() {
			fmt.Fprintf(&out, "%s=%s\n", v.Env(), m.Value(v.Name))
		}
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintf(stderr, "replicar: write config: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// versionString is the one line `replicar version` prints.
func versionString() string {
	v := version
	if v == "dev" {
		// `go install module@v1.2.3` records the module version.
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return fmt.Sprintf("replicar %s (commit %s, %s, %s/%s)", v, commitString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// commitString is the -ldflags commit, else the VCS revision Go embedded at
// build time, else "unknown".
func commitString() string {
	if commit != "" {
		return commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev == "":
		return "unknown"
	case modified == "true":
		return rev + "-dirty"
	default:
		return rev
	}
}
