package mysql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/replicar/replicar/test/harness"
)

// TestCheckBackend starts mariadbd without the binary log and with
// binlog_format=STATEMENT: row mode refuses both, naming the setting, and
// the server does not start on them; statement mode takes them.
func TestCheckBackend(t *testing.T) {
	for _, c := range []struct {
		name    string
		opts    []harness.MariaDBOption
		setting string
		fix     string
	}{
		{"no log_bin", []harness.MariaDBOption{harness.MariaDBLogBin(false)}, "log_bin", "--log-bin"},
		{"statement format", []harness.MariaDBOption{harness.MariaDBBinlogFormat("STATEMENT")}, "binlog_format", "binlog_format=ROW"},
		{"mixed format", []harness.MariaDBOption{harness.MariaDBBinlogFormat("MIXED")}, "binlog_format", "binlog_format=ROW"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := harness.StartMariaDB(t, c.opts...)
			cfg := Config{Backend: m.Addr, BackendUser: m.User, BackendPassword: m.Password}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := CheckBackend(ctx, cfg)
			var mis *MisconfiguredError
			if !errors.As(err, &mis) || mis.Setting != c.setting || !strings.Contains(err.Error(), c.fix) {
				t.Fatalf("CheckBackend: %v, want a misconfiguration of %s saying %q", err, c.setting, c.fix)
			}
			t.Logf("refused: %v", err)

			// Run refuses to start on it.
			cfg.Listen = "127.0.0.1:0"
			cfg.Logger = zerolog.Nop()
			srv, err := NewServer(cfg, newFakeLog(true), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Run(ctx); !errors.As(err, &mis) {
				t.Errorf("Run on a misconfigured backend: %v", err)
			}

			// Statement mode does not read the binlog.
			cfg.Format = FormatStatement
			info, err := CheckBackend(ctx, cfg)
			if err != nil || !info.MariaDB || info.Version == "" {
				t.Errorf("statement mode: %+v %v", info, err)
			}
		})
	}
	// server_id=0 is checked too, but MariaDB cannot be started with it
	// (it takes 1 instead), so no test starts one.
	t.Run("credentials", func(t *testing.T) {
		m := harness.StartMariaDB(t)
		info, err := CheckBackend(context.Background(), Config{Backend: m.Addr, BackendUser: m.User, BackendPassword: m.Password})
		if err != nil || info.ServerID != uint64(m.ServerID) || info.CollationID != 45 || !strings.Contains(info.TrackVars, "autocommit") {
			t.Fatalf("good backend: %+v %v", info, err)
		}
		_, err = CheckBackend(context.Background(), Config{Backend: m.Addr, BackendUser: m.User, BackendPassword: "wrong"})
		if me, ok := myError(err); !ok || me.Code != 1045 {
			t.Fatalf("wrong password: %v", err)
		}
		// Run gives up on it at once rather than retrying.
		srv, err := NewServer(Config{Listen: "127.0.0.1:0", Backend: m.Addr, BackendUser: m.User, BackendPassword: "wrong", Logger: zerolog.Nop()}, newFakeLog(true), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Run(ctx); err == nil || ctx.Err() != nil {
			t.Errorf("Run with wrong backend credentials: %v", err)
		}
	})
}
