package backlog

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/replicar/replicar/internal/datadriven"
)

// payloadFor is the deterministic payload of an offset, so reads can check
// that the bytes they get back belong to the offset they claim.
func payloadFor(epoch, offset uint64, size int) []byte {
	p := []byte(fmt.Sprintf("e%do%d.", epoch, offset))
	for len(p) < size {
		p = append(p, byte('a'+offset%26))
	}
	return p[:size]
}

func describeLog(l *Log) string {
	var hist []string
	for _, s := range l.History().Starts() {
		hist = append(hist, fmt.Sprintf("%d@%d", s.Epoch, s.StartOffset))
	}
	return fmt.Sprintf("first=%d last=%d len=%d bytes=%d last-epoch=%d history=[%s]",
		l.First(), l.Last(), l.Len(), l.Bytes(), l.LastEpoch(), strings.Join(hist, " "))
}

func errWord(err error) string {
	for _, s := range []error{ErrOutOfRetention, ErrFutureOffset, ErrOffsetGap, ErrEpochRegression,
		ErrEntryTooLarge, ErrDiverged, ErrHistoryTruncated, ErrStaleLeader} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "unexpected: " + err.Error()
}

func TestLogDataDriven(t *testing.T) {
	var l *Log
	sizes := map[uint64]int{}
	datadriven.Run(t, "log_*.txt", func(t *testing.T, tc datadriven.Case) string {
		switch tc.Cmd {
		case "new":
			l = NewLog(Options{
				MaxBytes:  int64(tc.Uint(t, "maxbytes", 0)),
				ChunkSize: int(tc.Uint(t, "chunk", 0)),
				MaxEpochs: int(tc.Uint(t, "epochs", 0)),
			})
			sizes = map[uint64]int{}
			return describeLog(l)
		case "append":
			epoch := tc.Uint(t, "epoch", 1)
			n := tc.Uint(t, "n", 1)
			size := int(tc.Uint(t, "size", 8))
			var first, last uint64
			for i := uint64(0); i < n; i++ {
				off, err := l.Append(epoch, payloadFor(epoch, l.Next(), size))
				if err != nil {
					return "error: " + errWord(err) + "\n" + describeLog(l)
				}
				sizes[off] = size
				if first == 0 {
					first = off
				}
				last = off
			}
			return fmt.Sprintf("appended %d..%d\n%s", first, last, describeLog(l))
		case "append-entry":
			e := Entry{Epoch: tc.Uint(t, "epoch", 1), Offset: tc.Uint(t, "offset", 0)}
			e.Payload = payloadFor(e.Epoch, e.Offset, 8)
			if err := l.AppendEntry(e); err != nil {
				return "error: " + errWord(err)
			}
			sizes[e.Offset] = 8
			return describeLog(l)
		case "read":
			got, err := l.Read(tc.Uint(t, "from", 1), int(tc.Uint(t, "max", 1<<20)), nil)
			if err != nil {
				return "error: " + errWord(err)
			}
			var parts []string
			for _, e := range got {
				want := payloadFor(e.Epoch, e.Offset, sizes[e.Offset])
				if !bytes.Equal(e.Payload, want) {
					t.Fatalf("%s: offset %d payload %q, want %q", tc.Pos, e.Offset, e.Payload, want)
				}
				parts = append(parts, fmt.Sprintf("%d:%d", e.Epoch, e.Offset))
			}
			if len(parts) == 0 {
				return "(none)"
			}
			return strings.Join(parts, " ")
		case "truncate":
			if err := l.TruncateAfter(tc.Uint(t, "after", 0)); err != nil {
				return "error: " + errWord(err)
			}
			return describeLog(l)
		case "reset":
			l.Reset(Position{Epoch: tc.Uint(t, "epoch", 0), Offset: tc.Uint(t, "offset", 0)})
			return describeLog(l)
		case "resume":
			d := l.Resume(tc.Uint(t, "epoch", 0), tc.Uint(t, "next", 1))
			switch d.Verdict {
			case Continue:
				if d.Reason != nil {
					t.Fatalf("%s: continue with a reason: %v", tc.Pos, d.Reason)
				}
				return fmt.Sprintf("continue from=%d", d.From)
			case Diverged:
				return fmt.Sprintf("diverged at=%d (%s)", d.DivergedAt, errWord(d.Reason))
			default:
				s := fmt.Sprintf("%s (%s)", d.Verdict, errWord(d.Reason))
				if d.DivergedAt != 0 {
					s += fmt.Sprintf(" diverged-at=%d", d.DivergedAt)
				}
				return s
			}
		}
		t.Fatalf("%s: unknown command %q", tc.Pos, tc.Cmd)
		return ""
	})
}
