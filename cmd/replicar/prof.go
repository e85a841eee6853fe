//go:build prof

package main

import (
	"os"
	"runtime/pprof"
)

// With -tags prof, REPLICAR_CPUPROFILE names a file that receives a CPU
// profile of the whole run: the benchmarks use it to see where a node's
// time goes under load. Release builds do not have it.
func init() {
	path := os.Getenv("REPLICAR_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	stopProfile = func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
