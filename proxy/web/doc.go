// Package web holds the status page a node serves on REPLICAR_HTTP_LISTEN
// at "/": static HTML, CSS and plain JavaScript, embedded in the binary so
// that the page needs nothing from outside (no CDN, no build step).
//
// The page polls the node's GET /group once a second and shows the group
// (roles, states, offsets, ISR membership, health), a live chart of each
// follower's lag, and the group's write and acknowledgement rates, derived
// from the leader's backlog and committed offsets. Role changes are listed
// as they are seen, so a failover can be watched as it happens.
//
// proxy.NewHTTPHandlerWith serves Files: static/index.html at "/" and the
// rest under "/static/".
package web
