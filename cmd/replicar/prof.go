//go:build prof

package main

import (
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// With -tags prof, REPLICAR_CPUPROFILE names a file that receives a CPU
// profile of the whole run, and REPLICAR_TRACE one that receives an
// execution trace (scheduling and network waits): the benchmarks use them to
// see where a node's time goes under load. Release builds have neither.
func init() {
	if path := os.Getenv("REPLICAR_TRACE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			panic(err)
		}
		if err := trace.Start(f); err != nil {
			panic(err)
		}
		prev := stopProfile
		stopProfile = func() {
			trace.Stop()
			f.Close()
			prev()
		}
	}
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
	prev := stopProfile
	stopProfile = func() {
		pprof.StopCPUProfile()
		f.Close()
		prev()
	}
}
