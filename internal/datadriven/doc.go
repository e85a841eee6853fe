// Package datadriven runs table tests written as text files, in the manner of
// etcd-io/raft's testdata/*.txt: each file is a sequence of commands, each
// followed by "----" and the output it must produce.
//
//	# comment
//	append epoch=1 n=3
//	----
//	appended 1..3
//
// A test calls Run with a glob under testdata/ and a function that executes
// one command and returns its output. Pass -rewrite to the test binary
// (go test ./pkg -rewrite) to write the actual outputs back into the files,
// then review the diff before committing: the review is the point.
//
// Only tests import this package.
package datadriven
