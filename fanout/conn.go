package fanout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// PeerError is an ERROR frame received from the peer: the session is over.
type PeerError struct {
	Code    uint64
	Message string
}

// Error formats the peer's code and message.
func (e *PeerError) Error() string {
	return fmt.Sprintf("fanout: peer error %d: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, ErrRejected) hold for codes a retry cannot fix
// (protocol, group). A node refused as not (yet) a member retries.
func (e *PeerError) Is(target error) bool {
	return target == ErrRejected && (e.Code == ErrCodeProtocol || e.Code == ErrCodeGroup)
}

// ErrRejected means the leader refused the follower itself (another group,
// an unknown node, an unsupported protocol): reconnecting will not help.
var ErrRejected = errors.New("fanout: rejected by leader")

// initialReadBuf is the frame reader's starting buffer; it grows up to the
// largest frame the protocol allows, and only when a frame needs it.
const initialReadBuf = 64 << 10

// frameReader reads frames from a stream. The frame a call returns (entry
// payloads in particular) aliases the reader's buffer and is valid until the
// next call.
type frameReader struct {
	r          io.Reader
	buf        []byte
	start, end int
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, buf: make([]byte, initialReadBuf)}
}

func (fr *frameReader) next() (Frame, error) {
	for {
		f, n, err := DecodeFrame(fr.buf[fr.start:fr.end])
		if err == nil {
			fr.start += n
			return f, nil
		}
		if !errors.Is(err, ErrShortFrame) {
			return Frame{}, err
		}
		if fr.start > 0 {
			fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
			fr.start = 0
		}
		if fr.end == len(fr.buf) {
			// DecodeFrame has checked the announced length by now (or
			// the header is incomplete, which fits any buffer), so
			// growing is bounded by MaxFrameBody.
			bigger := make([]byte, min(2*len(fr.buf), FrameHeaderSize+MaxFrameBody))
			copy(bigger, fr.buf[:fr.end])
			fr.buf = bigger
		}
		n, err = fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) && fr.end > 0 {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
}

// nextBuffered returns the next frame if it has already arrived whole, and
// never reads: frames returned before stay valid, since the buffer is only
// moved by a read.
func (fr *frameReader) nextBuffered() (Frame, bool, error) {
	if fr.start == fr.end {
		return Frame{}, false, nil
	}
	f, n, err := DecodeFrame(fr.buf[fr.start:fr.end])
	if errors.Is(err, ErrShortFrame) {
		return Frame{}, false, nil
	}
	if err != nil {
		return Frame{}, false, err
	}
	fr.start += n
	return f, true, nil
}

// frameWriter encodes frames into a reused buffer and writes each with a
// deadline, so a peer that stops reading costs its own session a timeout and
// nothing else.
type frameWriter struct {
	conn    net.Conn
	timeout time.Duration
	buf     []byte
}

func (fw *frameWriter) write(f Frame) error {
	fw.buf = AppendFrame(fw.buf[:0], f)
	if fw.timeout > 0 {
		if err := fw.conn.SetWriteDeadline(time.Now().Add(fw.timeout)); err != nil {
			return fmt.Errorf("set write deadline: %w", err)
		}
	}
	if _, err := fw.conn.Write(fw.buf); err != nil {
		return fmt.Errorf("write %v: %w", f.Type, err)
	}
	if cap(fw.buf) > 4*initialReadBuf {
		// Do not pin a huge batch's buffer for the session's life.
		fw.buf = nil
	}
	return nil
}

// errorFrame builds an ERROR frame.
func errorFrame(code uint64, format string, args ...any) Frame {
	return Frame{Type: TypeError, Error: Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// serverTLS runs the server side of the TLS handshake on conn when cfg is
// set, within timeout, and returns the TLS connection. A failed handshake
// (a plain-TCP peer, a certificate the CA did not sign, none when one is
// required) closes conn and says why.
func serverTLS(ctx context.Context, conn net.Conn, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	if cfg == nil {
		return conn, nil
	}
	tc := tls.Server(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return conn, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// dialer is the default FollowerConfig.Dial: TCP, then TLS when cfg is set
// (tls.Dialer takes the server name from the address dialled).
func dialer(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{KeepAlive: 15 * time.Second}
	if cfg == nil {
		return nd.DialContext
	}
	td := &tls.Dialer{NetDialer: nd, Config: cfg}
	return td.DialContext
}
