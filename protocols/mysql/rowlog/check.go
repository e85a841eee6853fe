package rowlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMisconfigured means the backend's settings do not allow row capture;
// the error names each setting to change.
var ErrMisconfigured = errors.New("backend misconfigured")

// ServerInfo is what Check learns about a backend.
type ServerInfo struct {
	Version  string
	MariaDB  bool
	ServerID uint32
	// GTIDBinlogPos is @@gtid_binlog_pos: the GTID position of the last
	// transaction in the binlog, where a new leader's capture starts.
	GTIDBinlogPos string
}

// Check verifies that the backend behind db can be captured in row mode:
// MariaDB 10.5 or later with log_bin=ON, binlog_format=ROW,
// binlog_row_image=FULL, binlog_row_metadata=FULL and a non-zero server_id.
// Every setting that is wrong is named in one error wrapping
// ErrMisconfigured.
func Check(ctx context.Context, db *sql.DB) (ServerInfo, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN "+
		"('version','log_bin','binlog_format','binlog_row_image','binlog_row_metadata','server_id','gtid_binlog_pos')")
	if err != nil {
		return ServerInfo{}, fmt.Errorf("check backend: %w", err)
	}
	vars := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return ServerInfo{}, fmt.Errorf("check backend: %w", err)
		}
		vars[strings.ToLower(k)] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ServerInfo{}, fmt.Errorf("check backend: %w", err)
	}
	info := ServerInfo{Version: vars["version"], GTIDBinlogPos: vars["gtid_binlog_pos"]}
	info.MariaDB = strings.Contains(strings.ToLower(info.Version), "mariadb")
	id, _ := strconv.ParseUint(vars["server_id"], 10, 32)
	info.ServerID = uint32(id)
	return info, checkVars(vars)
}

// checkVars is Check's verdict on the variables it read.
func checkVars(vars map[string]string) error {
	var bad []string
	want := func(name, value string) {
		got, ok := vars[name]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s is not supported by this server (MariaDB 10.5 or later is needed); it must be %s", name, value))
		case !strings.EqualFold(got, value):
			bad = append(bad, fmt.Sprintf("%s is %s, set %s=%s", name, got, name, value))
		}
	}
	if !strings.Contains(strings.ToLower(vars["version"]), "mariadb") {
		bad = append(bad, fmt.Sprintf("server %q is not MariaDB: row capture reads MariaDB GTIDs (use REPLICAR_MYSQL_FORMAT=statement)", vars["version"]))
	}
	want("log_bin", "ON")
	want("binlog_format", "ROW")
	want("binlog_row_image", "FULL")
	want("binlog_row_metadata", "FULL")
	if vars["server_id"] == "0" || vars["server_id"] == "" {
		bad = append(bad, "server_id is 0, set a unique server_id")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrMisconfigured, strings.Join(bad, "; "))
	}
	return nil
}
