package mysql

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What statement mode needs to know about the server's objects: stored
// routines (is a function deterministic, does it write), loadable
// functions, table definitions (engine, AUTO_INCREMENT, unique keys,
// defaults, triggers) and collation ids. It is read from
// information_schema on the session's backend connection when first
// needed, and forgotten after every DDL statement that goes through the
// front end: in statement mode every DDL does, since writes made
// elsewhere are not replicated.

// routineInfo is a stored function or procedure's declaration.
type routineInfo struct {
	deterministic bool
	// access is SQL_DATA_ACCESS: CONTAINS SQL, NO SQL, READS SQL DATA,
	// MODIFIES SQL DATA.
	access string
}

// writes says the routine may change data (MySQL does not check the
// declaration: CONTAINS SQL, the default, may write too).
func (r routineInfo) writes() bool {
	return r.access != "NO SQL" && r.access != "READS SQL DATA"
}

// tableInfo is what the safety rules need of a table.
type tableInfo struct {
	exists        bool
	engine        string
	transactional bool
	autoInc       bool
	// autoIncNotFirst: the AUTO_INCREMENT column is not the first column
	// of the primary key (MyISAM/Aria then number per key prefix).
	autoIncNotFirst bool
	uniqueKeys      int
	// unsafeDefaults maps the columns (lower case) whose default is not
	// deterministic to why: an INSERT that leaves them to it is refused.
	// A generated column computed so is refused for every INSERT.
	unsafeDefaults map[string]string
	// triggerInserts are the tables the table's triggers insert into.
	triggerInserts []tableRef
	// unsafeTriggers maps an event (INSERT, UPDATE, DELETE) to why a
	// trigger on it gives a different result on each server: its body
	// calls a function such as UUID(), which the statement's own text
	// does not show.
	unsafeTriggers map[string]string
}

// stmtMeta caches server metadata for the sessions of one Server.
type stmtMeta struct {
	mu  sync.Mutex
	gen uint64 // bumped by every DDL; caches of an older gen are stale

	routinesGen uint64
	routinesOK  bool
	routinesAt  time.Time
	funcs       map[string]routineInfo // "schema.name", lower case
	procs       map[string]routineInfo
	udfs        map[string]bool

	tables map[string]tableInfo // "schema.name", lower case, of gen tablesGen
	tabGen uint64

	// collations maps collation names to ids; defaults maps character set
	// names to their default collation's id.
	collations map[string]uint32
	defaults   map[string]uint32
}

// invalidate forgets routines and tables after a DDL.
func (m *stmtMeta) invalidate() {
	m.mu.Lock()
	m.gen++
	m.mu.Unlock()
}

// querier runs a query and returns its rows (NULL as "").
type querier func(q string) ([][]string, error)

// routinesMaxAge bounds how long routines made outside the front end go
// unseen.
const routinesMaxAge = 10 * time.Second

// loadRoutines reads stored routines and loadable functions if the cache
// is stale (or force).
func (m *stmtMeta) loadRoutines(query querier, force bool) error {
	m.mu.Lock()
	fresh := !force && m.routinesOK && m.routinesGen == m.gen && time.Since(m.routinesAt) < routinesMaxAge
	gen := m.gen
	m.mu.Unlock()
	if fresh {
		return nil
	}
	rows, err := query("SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE, IS_DETERMINISTIC, SQL_DATA_ACCESS FROM information_schema.ROUTINES")
	if err != nil {
		return fmt.Errorf("read stored routines: %w", err)
	}
	funcs, procs := map[string]routineInfo{}, map[string]routineInfo{}
	for _, r := range rows {
		if len(r) < 5 {
			continue
		}
		key := strings.ToLower(r[0] + "." + r[1])
		ri := routineInfo{deterministic: strings.EqualFold(r[3], "YES"), access: strings.ToUpper(r[4])}
		if strings.EqualFold(r[2], "FUNCTION") {
			funcs[key] = ri
		} else {
			procs[key] = ri
		}
	}
	udfs := map[string]bool{}
	// Loadable functions: mysql.func may not be readable by the backend
	// user; then none are known.
	if rows, err := query("SELECT name FROM mysql.func"); err == nil {
		for _, r := range rows {
			if len(r) > 0 {
				udfs[strings.ToLower(r[0])] = true
			}
		}
	}
	m.mu.Lock()
	m.funcs, m.procs, m.udfs, m.routinesGen, m.routinesOK, m.routinesAt = funcs, procs, udfs, gen, true, time.Now()
	m.mu.Unlock()
	return nil
}

// function looks up a called name: "schema.name", or a bare name in db.
func (m *stmtMeta) function(db, name string) (routineInfo, bool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.udfs[name] {
		return routineInfo{}, false, true
	}
	key := name
	if !strings.Contains(name, ".") {
		key = strings.ToLower(db) + "." + name
	}
	ri, ok := m.funcs[key]
	return ri, ok, false
}

func (m *stmtMeta) procedure(db, name string) (routineInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := name
	if !strings.Contains(name, ".") {
		key = strings.ToLower(db) + "." + name
	}
	ri, ok := m.procs[key]
	return ri, ok
}

// hasWritingFunctions says some stored function may write: only then must
// reads be scanned for calls.
func (m *stmtMeta) hasWritingFunctions() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.funcs {
		if f.writes() {
			return true
		}
	}
	return false
}

// table returns a table's metadata, reading it if it is not cached.
func (m *stmtMeta) table(ref tableRef, db string, query querier) (tableInfo, error) {
	schema := ref.schema
	if schema == "" {
		schema = db
	}
	key := strings.ToLower(schema + "." + ref.name)
	m.mu.Lock()
	if m.tabGen != m.gen || m.tables == nil {
		m.tables, m.tabGen = map[string]tableInfo{}, m.gen
	}
	ti, ok := m.tables[key]
	gen := m.gen
	m.mu.Unlock()
	if ok {
		return ti, nil
	}
	ti, err := readTableInfo(schema, ref.name, query)
	if err != nil {
		return ti, err
	}
	m.mu.Lock()
	if m.tabGen == gen {
		m.tables[key] = ti
	}
	m.mu.Unlock()
	return ti, nil
}

func sqlQuote(s string) string {
	return "'" + strings.NewReplacer("\\", "\\\\", "'", "''").Replace(s) + "'"
}

// readTableInfo reads one table's definition from information_schema.
func readTableInfo(schema, name string, query querier) (tableInfo, error) {
	var ti tableInfo
	where := func(alias string) string {
		return alias + "TABLE_SCHEMA=" + sqlQuote(schema) + " AND " + alias + "TABLE_NAME=" + sqlQuote(name)
	}
	rows, err := query("SELECT IFNULL(t.ENGINE,''), IFNULL(e.TRANSACTIONS,''), " +
		"(SELECT COUNT(*) FROM information_schema.COLUMNS c WHERE " + where("c.") + " AND c.EXTRA LIKE '%auto_increment%'), " +
		"(SELECT COUNT(DISTINCT s.INDEX_NAME) FROM information_schema.STATISTICS s WHERE " + where("s.") + " AND s.NON_UNIQUE=0), " +
		"(SELECT COUNT(*) FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA=s.TABLE_SCHEMA AND c.TABLE_NAME=s.TABLE_NAME AND c.COLUMN_NAME=s.COLUMN_NAME " +
		"WHERE " + where("s.") + " AND s.INDEX_NAME='PRIMARY' AND s.SEQ_IN_INDEX>1 AND c.EXTRA LIKE '%auto_increment%') " +
		"FROM information_schema.TABLES t LEFT JOIN information_schema.ENGINES e ON e.ENGINE=t.ENGINE WHERE " + where("t."))
	if err != nil {
		return ti, fmt.Errorf("read table %s.%s: %w", schema, name, err)
	}
	if len(rows) == 0 || len(rows[0]) < 5 {
		return ti, nil // no such table (or a temporary one): the statement decides
	}
	r := rows[0]
	ti.exists = true
	ti.engine = r[0]
	// A view has no engine: what it writes is its base tables'.
	ti.transactional = r[0] == "" || strings.EqualFold(r[1], "YES")
	n, _ := strconv.Atoi(r[2])
	ti.autoInc = n > 0
	ti.uniqueKeys, _ = strconv.Atoi(r[3])
	n, _ = strconv.Atoi(r[4])
	ti.autoIncNotFirst = n > 0
	defs, err := query("SELECT COLUMN_NAME, IFNULL(COLUMN_DEFAULT,''), IFNULL(GENERATION_EXPRESSION,'') FROM information_schema.COLUMNS WHERE " + where("") +
		" AND (COLUMN_DEFAULT LIKE '%(%' OR GENERATION_EXPRESSION <> '')")
	if err != nil {
		return ti, fmt.Errorf("read table %s.%s: %w", schema, name, err)
	}
	for _, d := range defs {
		if len(d) < 3 {
			continue
		}
		col := strings.ToLower(d[0])
		if why := unsafeExpression(d[1]); why != "" {
			if ti.unsafeDefaults == nil {
				ti.unsafeDefaults = map[string]string{}
			}
			ti.unsafeDefaults[col] = fmt.Sprintf("column %s of %s.%s defaults to %s, and the statement leaves it to its default", d[0], schema, name, why)
		}
		if why := unsafeExpression(d[2]); why != "" {
			if ti.unsafeDefaults == nil {
				ti.unsafeDefaults = map[string]string{}
			}
			ti.unsafeDefaults["\x00"+col] = fmt.Sprintf("column %s of %s.%s is generated with %s", d[0], schema, name, why)
		}
	}
	trig, err := query("SELECT ACTION_STATEMENT, EVENT_MANIPULATION, TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA=" + sqlQuote(schema) + " AND EVENT_OBJECT_TABLE=" + sqlQuote(name))
	if err != nil {
		return ti, fmt.Errorf("read triggers of %s.%s: %w", schema, name, err)
	}
	for _, t := range trig {
		if len(t) < 3 {
			continue
		}
		ti.triggerInserts = append(ti.triggerInserts, insertTargets(t[0], schema)...)
		if why := unsafeExpression(t[0]); why != "" {
			if ti.unsafeTriggers == nil {
				ti.unsafeTriggers = map[string]string{}
			}
			event := strings.ToUpper(t[1])
			if _, seen := ti.unsafeTriggers[event]; !seen {
				ti.unsafeTriggers[event] = fmt.Sprintf("trigger %s on %s of %s.%s calls %s, which gives each server its own value", t[2], event, schema, name, why)
			}
		}
	}
	return ti, nil
}

// unsafeExpression says why an expression (a column default) gives a
// different value on each server, or "".
func unsafeExpression(expr string) string {
	toks := sqlScan(expr, true)
	for i, t := range toks {
		if (t.kind == tkWord) && i+1 < len(toks) && toks[i+1].punct('(') {
			name := strings.ToLower(t.text)
			if name == "rand" {
				return "RAND(), evaluated per row outside the statement's seed"
			}
			if _, ok := unsafeFuncs[name]; ok {
				return strings.ToUpper(name) + "()"
			}
		}
		if t.is("NEXT") && peekWord(toks, i+1) == "VALUE" {
			return "a sequence"
		}
	}
	return ""
}

// insertTargets lists the tables a trigger body inserts into.
func insertTargets(body, db string) []tableRef {
	var out []tableRef
	for _, p := range splitStatements(body, true) {
		toks := p.toks
		for i, t := range toks {
			if !t.is("INSERT") && !t.is("REPLACE") {
				continue
			}
			j := i + 1
			for w := peekWord(toks, j); w == "LOW_PRIORITY" || w == "HIGH_PRIORITY" || w == "DELAYED" || w == "IGNORE"; w = peekWord(toks, j) {
				j++
			}
			if peekWord(toks, j) == "INTO" {
				j++
			}
			if ref, _, ok := readTableRef(toks, j); ok {
				if ref.schema == "" {
					ref.schema = db
				}
				out = append(out, ref)
			}
		}
	}
	return out
}

// loadCollations reads collation ids once.
func (m *stmtMeta) loadCollations(query querier) error {
	m.mu.Lock()
	done := m.collations != nil
	m.mu.Unlock()
	if done {
		return nil
	}
	rows, err := query("SELECT COLLATION_NAME, CHARACTER_SET_NAME, ID, IS_DEFAULT FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
	if err != nil {
		return fmt.Errorf("read collations: %w", err)
	}
	colls, defs := map[string]uint32{}, map[string]uint32{}
	for _, r := range rows {
		if len(r) < 4 {
			continue
		}
		id, err := strconv.ParseUint(r[2], 10, 32)
		if err != nil {
			continue
		}
		colls[strings.ToLower(r[0])] = uint32(id)
		if strings.EqualFold(r[3], "YES") {
			defs[strings.ToLower(r[1])] = uint32(id)
		}
	}
	m.mu.Lock()
	m.collations, m.defaults = colls, defs
	m.mu.Unlock()
	return nil
}

// collationIDs returns the ids rowlog.Session wants: the default
// collation of the client character set, and the two collations.
func (m *stmtMeta) collationIDs(client, conn, server string) (uint32, uint32, uint32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok1 := m.defaults[strings.ToLower(client)]
	b, ok2 := m.collations[strings.ToLower(conn)]
	c, ok3 := m.collations[strings.ToLower(server)]
	return a, b, c, ok1 && ok2 && ok3
}
