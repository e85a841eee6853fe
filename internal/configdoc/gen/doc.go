// Command gen writes the configuration reference that package configdoc
// renders from proxy.Config's tags. `go generate ./internal/configdoc`
// runs it:
//
//	go run ./internal/configdoc/gen -o docs/CONFIG.md
package main
