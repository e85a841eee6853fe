// Package examples holds runnable local groups, compose files and
// Kubernetes sidecar manifests. It contains no library code; the Go files
// here only document the folder.
package examples
