package mysql

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// checkStatementBackend checks what statement mode needs of the primary:
// AUTO_INCREMENT values that a replay of the same statement reproduces
// (innodb_autoinc_lock_mode 0 or 1: "interleaved" mode 2, MySQL 8's
// default, hands concurrent multi-row inserts interleaved values, which
// MySQL itself calls unsafe for statement-based replication), and a
// default isolation level at which a statement's effect does not depend
// on concurrent commits (REPEATABLE READ or SERIALIZABLE). No binary log
// is needed.
func checkStatementBackend(b *backendConn, cfg Config, info BackendInfo) error {
	iso := "@@global.tx_isolation"
	if !info.MariaDB {
		iso = "@@global.transaction_isolation"
	}
	_, rows, err := b.simpleQuery("SELECT @@global.innodb_autoinc_lock_mode, " + iso)
	if err != nil {
		return fmt.Errorf("backend %s: statement mode settings: %w", cfg.Backend, err)
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return fmt.Errorf("backend %s: short answer to the statement mode settings query", cfg.Backend)
	}
	mis := func(setting, problem, fix string) error {
		return &MisconfiguredError{Backend: cfg.Backend, Setting: setting, Problem: problem, Fix: fix, Format: FormatStatement}
	}
	if rows[0][0] == "2" {
		return mis("innodb_autoinc_lock_mode", "innodb_autoinc_lock_mode is 2 (interleaved): concurrent inserts get AUTO_INCREMENT values a replay cannot reproduce",
			"set innodb_autoinc_lock_mode=1 (--innodb-autoinc-lock-mode=1)")
	}
	switch strings.ToUpper(rows[0][1]) {
	case "READ-COMMITTED", "READ-UNCOMMITTED":
		return mis("transaction_isolation", "the default isolation level is "+rows[0][1]+", at which statements cannot be logged safely",
			"set transaction_isolation=REPEATABLE-READ (--transaction-isolation=REPEATABLE-READ)")
	}
	return nil
}

// StoreMark is what a store says of the log it holds. A statement-mode
// leader's transactions each record their entry's (epoch, offset) in
// __replicar.stmt_log, in the same transaction, before the entry is
// appended; a DDL (or a write to a non-transactional table) is recorded
// as pending in __replicar.pos (ddl_epoch, ddl_offset) before it runs, and
// in stmt_log after its entry is appended. A follower's applier keeps
// (epoch, offset) in __replicar.pos.
type StoreMark struct {
	// Epoch and Offset are the last entry the store holds by its own
	// record: the highest of __replicar.pos and stmt_log.
	Epoch, Offset uint64
	// DDLEpoch and DDLOffset are an entry that may have run without its
	// append being recorded (0 when none).
	DDLEpoch, DDLOffset uint64
}

// Ahead says whether the store may hold a change the log does not: the
// node died (or its Append failed) between a COMMIT, or a DDL, and its
// append. has(epoch, offset) reports whether the log holds that entry
// (true for entries older than the log retains). A store that is ahead
// must be fully resynced before it follows a leader.
func (m StoreMark) Ahead(has func(epoch, offset uint64) bool) bool {
	if m.Offset > 0 && !has(m.Epoch, m.Offset) {
		return true
	}
	return m.DDLOffset > m.Offset && !has(m.DDLEpoch, m.DDLOffset)
}

// Position is where a store that is not Ahead stands: a pending DDL the
// log holds did run (it is appended only after it succeeded). A node that
// stops leading records it with apply.Applier.SetPosition before its
// applier takes over.
func (m StoreMark) Position(has func(epoch, offset uint64) bool) (epoch, offset uint64) {
	if m.DDLOffset > m.Offset && has(m.DDLEpoch, m.DDLOffset) {
		return m.DDLEpoch, m.DDLOffset
	}
	return m.Epoch, m.Offset
}

// ReadStoreMark reads a store's mark with the backend credentials of cfg.
// A store without replicar's tables has the zero mark.
func ReadStoreMark(ctx context.Context, cfg Config) (StoreMark, error) {
	cfg.setDefaults()
	srv := &Server{cfg: cfg}
	b, err := srv.dialOwn(ctx)
	if err != nil {
		return StoreMark{}, fmt.Errorf("backend %s: %w", cfg.Backend, err)
	}
	defer b.close()
	u := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
	var m StoreMark
	_, rows, err := b.simpleQuery("SELECT epoch, `offset`, ddl_epoch, ddl_offset FROM " + posTable + " WHERE id=1")
	if err != nil {
		if me, ok := myError(err); ok && (me.Code == 1146 || me.Code == 1049) {
			return StoreMark{}, nil
		}
		return StoreMark{}, fmt.Errorf("read %s.pos: %w", rowlog.InternalSchema, err)
	}
	if len(rows) == 1 && len(rows[0]) == 4 {
		m = StoreMark{Epoch: u(rows[0][0]), Offset: u(rows[0][1]), DDLEpoch: u(rows[0][2]), DDLOffset: u(rows[0][3])}
	}
	_, rows, err = b.simpleQuery("SELECT epoch, `offset` FROM " + commitTable + " ORDER BY `offset` DESC LIMIT 1")
	if err != nil {
		if me, ok := myError(err); ok && me.Code == 1146 {
			return m, nil
		}
		return StoreMark{}, fmt.Errorf("read %s.stmt_log: %w", rowlog.InternalSchema, err)
	}
	if len(rows) == 1 && len(rows[0]) == 2 && u(rows[0][1]) > m.Offset {
		m.Epoch, m.Offset = u(rows[0][0]), u(rows[0][1])
	}
	return m, nil
}
