package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/replicar/replicar/proxy"
)

// loadConfig builds the node configuration from environ ("NAME=value"
// entries, as os.Environ returns them). It returns the configuration, the
// warnings to show (unknown REPLICAR_ variables, settings with no effect),
// and one error per bad variable, sorted in contract order. This is the only
// place that reads REPLICAR_* variables.
func loadConfig(environ []string) (proxy.Config, []string, []error) {
	cfg := proxy.Default()
	var warnings []string
	var errs []error
	seen := map[string]bool{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		short, found := strings.CutPrefix(name, proxy.EnvPrefix)
		if !ok || !found {
			continue
		}
		if _, known := proxy.LookupVar(short); !known {
			warnings = append(warnings, unknownVarWarning(name))
			continue
		}
		// The environment can hold a name twice; getenv takes the first.
		if seen[short] {
			continue
		}
		seen[short] = true
		if value == "" {
			continue // empty counts as unset
		}
		if err := cfg.Set(short, value); err != nil {
			errs = append(errs, err)
		}
	}
	cfg.ApplyDefaults()

	// Validate sees the defaults in place of values Set refused, so it cannot
	// report those variables again; skip its errors for them regardless.
	reported := map[string]bool{}
	for _, err := range errs {
		if ve := (*proxy.VarError)(nil); errors.As(err, &ve) {
			reported[ve.Name] = true
		}
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range unjoin(err) {
			if ve := (*proxy.VarError)(nil); errors.As(e, &ve) && reported[ve.Name] {
				continue
			}
			errs = append(errs, e)
		}
	}
	slices.SortStableFunc(errs, func(a, b error) int { return varIndex(a) - varIndex(b) })
	if len(errs) == 0 {
		warnings = append(warnings, cfg.Warnings()...)
	}
	return cfg, warnings, errs
}

// unjoin splits an errors.Join result back into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// varIndex is the position in the contract of the variable err names.
func varIndex(err error) int {
	var ve *proxy.VarError
	if errors.As(err, &ve) {
		for i, v := range proxy.Vars() {
			if v.Env() == ve.Name {
				return i
			}
		}
	}
	return len(proxy.Vars())
}

// unknownVarWarning names an unknown REPLICAR_ variable and, when one is
// close, the variable that was probably meant.
func unknownVarWarning(name string) string {
	msg := "unknown variable " + name + " is ignored"
	best, bestDist := "", 3 // suggest only within two edits
	for _, v := range proxy.Vars() {
		if d := editDistance(name, v.Env()); d < bestDist {
			best, bestDist = v.Env(), d
		}
	}
	if best != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", best)
	}
	return msg
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
