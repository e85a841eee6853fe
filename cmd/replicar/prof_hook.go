package main

// stopProfile ends a CPU profile started by a -tags prof build (prof.go);
// it does nothing otherwise.
var stopProfile = func() {}
