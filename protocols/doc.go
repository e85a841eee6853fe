// Package protocols groups the store protocols replicar fronts: resp (Redis)
// and mysql (MySQL/MariaDB). The two share no code. Each meets the core
// through small interfaces (a classifier, an applier, a snapshotter) that the
// proxy package wires up, and each is the only place where core errors become
// wire errors (TRYAGAIN, NOREPLICAS, UNCOMMITTED, ERR backend unavailable).
package protocols
