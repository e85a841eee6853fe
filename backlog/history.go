package backlog

import "fmt"

// EpochStart says that epoch Epoch wrote the log from StartOffset on, until
// the next EpochStart.
type EpochStart struct {
	Epoch       uint64
	StartOffset uint64
}

// History is the epoch history of a log: an ordered list of EpochStart with
// strictly increasing epochs and non-decreasing start offsets. It is Kafka's
// leader-epoch cache. The zero value is empty and ready to use.
type History struct {
	starts []EpochStart
}

// Starts returns the history, oldest first. The slice is shared; do not
// modify it.
func (h *History) Starts() []EpochStart { return h.starts }

// Len is the number of epochs remembered.
func (h *History) Len() int { return len(h.starts) }

// LastEpoch is the newest epoch, or 0 for an empty history.
func (h *History) LastEpoch() uint64 {
	if len(h.starts) == 0 {
		return 0
	}
	return h.starts[len(h.starts)-1].Epoch
}

// Observe records that epoch wrote offset. A new, higher epoch starts a new
// EpochStart; the current epoch changes nothing; a lower epoch is refused with
// ErrEpochRegression.
func (h *History) Observe(epoch, offset uint64) error {
	if n := len(h.starts); n > 0 {
		last := h.starts[n-1]
		switch {
		case epoch == last.Epoch:
			return nil
		case epoch < last.Epoch:
			return fmt.Errorf("%w: epoch %d after %d", ErrEpochRegression, epoch, last.Epoch)
		case offset < last.StartOffset:
			return fmt.Errorf("%w: epoch %d starts at %d, before epoch %d at %d",
				ErrOffsetGap, epoch, offset, last.Epoch, last.StartOffset)
		}
	}
	h.starts = append(h.starts, EpochStart{Epoch: epoch, StartOffset: offset})
	return nil
}

// EpochAt returns the epoch that wrote offset. ok is false when the history
// does not reach back that far (or offset is 0). The caller knows whether the
// offset exists at all; the history only knows where epochs begin.
func (h *History) EpochAt(offset uint64) (epoch uint64, ok bool) {
	if offset == 0 {
		return 0, false
	}
	for i := len(h.starts) - 1; i >= 0; i-- {
		if h.starts[i].StartOffset <= offset {
			return h.starts[i].Epoch, true
		}
	}
	return 0, false
}

// EndOffsetFor answers Kafka's OffsetsForLeaderEpoch question: the last offset
// that this history's owner wrote under epoch or any earlier epoch, given that
// its log ends at logEnd. It is the start of the first newer epoch minus one,
// or logEnd when no newer epoch exists. ok is false when the history no longer
// holds any epoch at or below epoch, so the answer cannot be known.
func (h *History) EndOffsetFor(epoch, logEnd uint64) (end uint64, ok bool) {
	if len(h.starts) == 0 || h.starts[0].Epoch > epoch {
		return 0, false
	}
	for _, s := range h.starts {
		if s.Epoch > epoch {
			return s.StartOffset - 1, true
		}
	}
	return logEnd, true
}

// TruncateAfter forgets epochs that start after offset, because the entries
// they wrote are gone.
func (h *History) TruncateAfter(offset uint64) {
	n := len(h.starts)
	for n > 0 && h.starts[n-1].StartOffset > offset {
		n--
	}
	clear(h.starts[n:])
	h.starts = h.starts[:n]
}

// keepNewest drops the oldest epochs until at most max remain.
func (h *History) keepNewest(max int) {
	if max <= 0 || len(h.starts) <= max {
		return
	}
	drop := len(h.starts) - max
	copy(h.starts, h.starts[drop:])
	clear(h.starts[max:])
	h.starts = h.starts[:max]
}

// reset replaces the history by a single epoch known to cover offset.
func (h *History) reset(epoch, offset uint64) {
	clear(h.starts)
	h.starts = h.starts[:0]
	if offset > 0 {
		h.starts = append(h.starts, EpochStart{Epoch: epoch, StartOffset: offset})
	}
}
