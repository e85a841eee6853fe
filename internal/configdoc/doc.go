// Package configdoc renders the configuration reference, docs/CONFIG.md,
// from proxy.Vars(), the metadata read from proxy.Config's struct tags. The
// reference therefore cannot drift from the code: a test fails when the
// committed file differs from what Markdown renders, and says how to
// regenerate it:
//
//	go generate ./internal/configdoc
//
// which runs the gen program in this folder.
package configdoc
