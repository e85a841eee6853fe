//go:build tools

// Package pins keeps the dependencies the design names in go.mod at their
// pinned versions before the code that uses them lands, so that `go mod
// tidy` cannot drop them and a later `go get` cannot move them by accident.
// The build tag keeps it out of every real build.
package pins

import (
	_ "github.com/Shopify/toxiproxy/v2"
	_ "github.com/anishathalye/porcupine"
	_ "github.com/go-mysql-org/go-mysql/server"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/tidwall/redcon"
)
