package localgroup

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Proc is a process whose CPU time a benchmark reports.
type Proc struct {
	Name string
	PID  int
}

// clockTick is USER_HZ, which /proc/<pid>/stat counts in; 100 on every
// Linux architecture Go supports.
const clockTick = 100

// CPUSeconds is the user and system CPU time process pid has used so far.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces; the fields after its
	// closing parenthesis start with field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return (utime + stime) / clockTick, nil
}

// CPUMeter measures the CPU time of a set of processes from StartCPU on.
type CPUMeter struct {
	procs []Proc
	start []float64
}

// StartCPU starts measuring procs.
func StartCPU(procs []Proc) *CPUMeter {
	m := &CPUMeter{procs: procs}
	for _, p := range procs {
		s, _ := CPUSeconds(p.PID)
		m.start = append(m.start, s)
	}
	return m
}

// Used is the CPU seconds each process has used since the start, in the
// order StartCPU got them; ok is false for one that could not be read.
func (m *CPUMeter) Used() (seconds []float64, ok []bool) {
	for i, p := range m.procs {
		s, err := CPUSeconds(p.PID)
		seconds = append(seconds, s-m.start[i])
		ok = append(ok, err == nil)
	}
	return seconds, ok
}

// Report lists "name amount" for each process, the CPU seconds it used
// since the start times scale (1 for seconds, 1e6/ops for µs per
// operation), and the total of the amounts.
func (m *CPUMeter) Report(scale float64) (string, float64) {
	seconds, ok := m.Used()
	var parts []string
	total := 0.0
	for i, p := range m.procs {
		if !ok[i] {
			parts = append(parts, p.Name+" ?")
			continue
		}
		total += seconds[i] * scale
		parts = append(parts, fmt.Sprintf("%s %.1f", p.Name, seconds[i]*scale))
	}
	return strings.Join(parts, ", "), total
}
