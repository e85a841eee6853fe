//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "relay: Linux only (it is an epoll loop)")
	os.Exit(1)
}
