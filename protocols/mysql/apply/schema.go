package apply

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/replicar/replicar/protocols/mysql/rowlog"
)

// Schema is where replicar keeps its own tables on every backend. It is
// never captured, never copied by a snapshot, and left out of data
// comparisons.
const Schema = rowlog.InternalSchema

// posTable holds one row (id 1): the position of the last entry applied
// (epoch, offset), written in the same transaction as the entry's data.
//
// state is "" normally and "resync" while a snapshot is being copied in,
// so that a half-copied store is never taken for one at a position.
// ddl_epoch/ddl_offset/ddl_binlog describe a DDL entry whose statement may
// have run but whose position is not yet recorded (see applyDDL): its
// entry, and the DDL domain's GTID in @@gtid_binlog_pos just before.
// leading_epoch/leading_start mark a store whose node leads (see
// Applier.MarkLeading).
const posTable = "`" + Schema + "`.`pos`"

var schemaSQL = []string{
	"CREATE DATABASE IF NOT EXISTS `" + Schema + "`",
	"CREATE TABLE IF NOT EXISTS " + posTable + ` (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  epoch BIGINT UNSIGNED NOT NULL,
  ` + "`offset`" + ` BIGINT UNSIGNED NOT NULL,
  state VARCHAR(16) NOT NULL DEFAULT '',
  ddl_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ddl_offset BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ddl_binlog VARCHAR(2048) NOT NULL DEFAULT '',
  leading_epoch BIGINT UNSIGNED NOT NULL DEFAULT 0,
  leading_start VARCHAR(2048) NOT NULL DEFAULT ''
) ENGINE=InnoDB`,
	"INSERT IGNORE INTO " + posTable + " (id, epoch, `offset`) VALUES (1, 0, 0)",
}

// SchemaSQL returns the statements that create Schema and the position
// table if they are missing. Statement mode's front end runs them on the
// leader's backend, whose transactions record their own position in the
// same table.
func SchemaSQL() []string { return append([]string(nil), schemaSQL...) }

// ensureSchema creates Schema and the position table if missing, without
// writing them to the binlog (the session has sql_log_bin=0).
func ensureSchema(ctx context.Context, conn *sql.Conn) error {
	for _, q := range schemaSQL {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create %s: %w", Schema, err)
		}
	}
	return nil
}

// loadEnv reads the target's collations and generated columns.
func loadEnv(ctx context.Context, conn *sql.Conn) (*env, error) {
	e := &env{charsets: map[uint32]string{}, collations: map[uint32]string{}}
	rows, err := conn.QueryContext(ctx, "SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
	if err != nil {
		return nil, fmt.Errorf("read collations: %w", err)
	}
	for rows.Next() {
		var id uint32
		var cs, coll string
		if err := rows.Scan(&id, &cs, &coll); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read collations: %w", err)
		}
		e.charsets[id], e.collations[id] = cs, coll
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read collations: %w", err)
	}
	if e.generated, err = loadGenerated(ctx, conn); err != nil {
		return nil, err
	}
	return e, nil
}

// loadGenerated lists the generated (virtual or stored) columns of every
// table: the binlog logs their values, but the target computes them.
func loadGenerated(ctx context.Context, conn *sql.Conn) (map[string]map[string]bool, error) {
	// The system schemas are left out: listing their columns costs
	// hundreds of milliseconds, and they have no generated columns.
	rows, err := conn.QueryContext(ctx, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "+
		"WHERE TABLE_SCHEMA NOT IN ('mysql','sys','information_schema','performance_schema') "+
		"AND (EXTRA LIKE '%GENERATED%' OR EXTRA IN ('VIRTUAL','PERSISTENT','STORED'))")
	if err != nil {
		return nil, fmt.Errorf("read generated columns: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var s, t, c string
		if err := rows.Scan(&s, &t, &c); err != nil {
			return nil, fmt.Errorf("read generated columns: %w", err)
		}
		k := tableKey(s, t)
		if out[k] == nil {
			out[k] = map[string]bool{}
		}
		out[k][c] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read generated columns: %w", err)
	}
	return out, nil
}

// domainGTID returns the GTID of domain d in a GTID position ("" if
// absent): "7380-1002-5" from "0-1-9,7380-1002-5".
func domainGTID(pos string, d uint32) string {
	prefix := fmt.Sprintf("%d-", d)
	for _, g := range strings.Split(pos, ",") {
		g = strings.TrimSpace(g)
		if strings.HasPrefix(g, prefix) {
			return g
		}
	}
	return ""
}
