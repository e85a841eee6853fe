package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// screen writes the demo's output. On a terminal a step that waits shows a
// spinner with its elapsed time on one line that the step's result then
// replaces; elsewhere (a pipe, a file, CI) only the results are written.
type screen struct {
	out   io.Writer
	tty   bool
	start time.Time

	mu      sync.Mutex
	spinner string // the line being redrawn, "" when none
}

func newScreen(out io.Writer) *screen {
	return &screen{out: out, tty: isTerminal(out), start: time.Now()}
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// elapsed is the time since the demo started, as the left margin shows it.
func (s *screen) elapsed() string {
	return fmt.Sprintf("[%5.1fs]", time.Since(s.start).Seconds())
}

// println writes a line, clearing a spinner first.
func (s *screen) println(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
	fmt.Fprintf(s.out, format+"\n", args...)
	if s.spinner != "" && s.tty {
		fmt.Fprint(s.out, s.spinner)
	}
}

// done reports a finished step.
func (s *screen) done(msg string) { s.println("%s ✓ %s", s.elapsed(), msg) }

// note reports something that happened, such as an event of the group.
func (s *screen) note(msg string) { s.println("%s   %s", s.elapsed(), msg) }

func (s *screen) clearLocked() {
	if s.tty && s.spinner != "" {
		fmt.Fprint(s.out, "\r\033[K")
	}
}

// step shows label with a spinner until the returned function is called.
func (s *screen) step(label string) (stop func()) {
	if !s.tty {
		return func() {}
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	began := time.Now()
	go func() {
		defer close(finished)
		frames := `|/-\`
		for i := 0; ; i++ {
			s.mu.Lock()
			s.clearLocked()
			s.spinner = fmt.Sprintf("%s %c %s … %.1fs", s.elapsed(), frames[i%len(frames)], label, time.Since(began).Seconds())
			fmt.Fprint(s.out, s.spinner)
			s.mu.Unlock()
			select {
			case <-quit:
				s.mu.Lock()
				s.clearLocked()
				s.spinner = ""
				s.mu.Unlock()
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// group3 formats a count with thousands separators.
func group3(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + group3(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
