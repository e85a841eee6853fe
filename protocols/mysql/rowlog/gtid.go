package rowlog

import (
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Ahead reports whether GTID position a holds a transaction that b does
// not: a domain of a, other than those in ignore, that b lacks or has at a
// lower sequence number. Both are @@gtid_binlog_pos strings.
//
// A node uses it at start: if its backend's @@gtid_binlog_pos is ahead of
// the Position of the last entry its own capture appended, the backend
// committed transactions the backlog never logged (it crashed while
// leading), and it must not follow another leader without a full resync.
func Ahead(a, b string, ignore []uint32) (bool, error) {
	pa, err := mysql.ParseMariadbGTIDSet(a)
	if err != nil {
		return false, fmt.Errorf("rowlog: gtid position %q: %w", a, err)
	}
	pb, err := mysql.ParseMariadbGTIDSet(b)
	if err != nil {
		return false, fmt.Errorf("rowlog: gtid position %q: %w", b, err)
	}
	skip := map[uint32]bool{}
	for _, d := range ignore {
		skip[d] = true
	}
	have := pb.(*mysql.MariadbGTIDSet).Sets
	for d, g := range pa.(*mysql.MariadbGTIDSet).Sets {
		if skip[d] {
			continue
		}
		if h, ok := have[d]; !ok || h.SequenceNumber < g.SequenceNumber {
			return true, nil
		}
	}
	return false, nil
}
