package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/replicar/replicar/internal/configdoc"
	"github.com/replicar/replicar/proxy"
)

func main() {
	out := flag.String("o", "", "file to write; standard output when empty")
	flag.Parse()
	doc := configdoc.Markdown(proxy.Vars())
	if *out == "" {
		os.Stdout.Write(doc)
		return
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "configdoc: %v\n", err)
		os.Exit(1)
	}
}
