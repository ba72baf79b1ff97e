package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ErrMessageTooLarge is returned for a message over the configured limit.
var ErrMessageTooLarge = errors.New("message too large")

// errInvalidLength is returned for a message whose length field is below 4.
var errInvalidLength = errors.New("invalid message length")

// msgReader reads PostgreSQL v3 messages (type byte, int32 length including
// itself, body) without decoding them: the relay only looks at a few type
// bytes, and copying raw frames keeps the hot path allocation-free.
//
// An idle client costs only a small inline buffer: a larger one is borrowed
// from a pool while messages arrive and given back once everything read has
// been consumed. A read that fails (a deadline, say) loses nothing: the
// bytes read so far stay buffered for the next call.
//
// Any other read error (EOF, a reset, a closed connection) ends the stream
// for good: it is kept and returned by every later call that needs to read,
// without reading again. The relay must see the end of a client's
// connection whatever deadline it sets afterwards: Go checks an expired
// deadline before the read system call, so an EOF read once, then
// forgotten, would never be read again, and a relay that re-armed an expired
// deadline would go round without end.
type msgReader struct {
	rd    io.Reader
	max   int
	buf   []byte // buf[r:w] is unread input
	r, w  int
	small []byte // the idle buffer (nil: always use a large one)
	err   error  // the error that ended the stream; nil while it goes on
}

const (
	smallReadBuf = 256
	largeReadBuf = 16 << 10
)

var largeBufs = sync.Pool{New: func() any { b := make([]byte, largeReadBuf); return &b }}

// newMsgReader reads from a peer that may stay idle a long time (a client).
func newMsgReader(r io.Reader, max int) *msgReader {
	small := make([]byte, smallReadBuf)
	return &msgReader{rd: r, max: max, buf: small, small: small}
}

// newServerReader reads from a server connection: always a large buffer.
func newServerReader(r io.Reader, max int) *msgReader {
	return &msgReader{rd: r, max: max, buf: make([]byte, largeReadBuf)}
}

// next returns the next whole message (header included). The slice is
// valid until the following call.
func (m *msgReader) next() ([]byte, error) {
	if m.r == m.w {
		m.r, m.w = 0, 0
		m.shrink()
	}
	if err := m.fill(5); err != nil {
		return nil, err
	}
	hdr := m.buf[m.r : m.r+5]
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return nil, fmt.Errorf("message %q has invalid length %d: %w", hdr[0], n, errInvalidLength)
	}
	if n > m.max {
		return nil, fmt.Errorf("message %q of %d bytes: %w (limit %d)", hdr[0], n, ErrMessageTooLarge, m.max)
	}
	total := n + 1
	if err := m.fill(total); err != nil {
		return nil, err
	}
	msg := m.buf[m.r : m.r+total : m.r+total]
	m.r += total
	return msg, nil
}

// wait blocks until the peer sends something, or the read fails, and
// keeps what came. For a reader with nothing buffered: it reads into the
// small idle buffer.
func (m *msgReader) wait() error {
	if m.r == m.w {
		m.r, m.w = 0, 0
		m.shrink()
	}
	return m.fill(1)
}

// fill reads until need bytes are buffered. Bytes that arrived with the
// error that ended the stream are still served.
func (m *msgReader) fill(need int) error {
	for m.w-m.r < need {
		if m.err != nil {
			if errors.Is(m.err, io.EOF) && m.w > m.r {
				return io.ErrUnexpectedEOF
			}
			return m.err
		}
		if len(m.buf)-m.r < need {
			m.grow(need)
		}
		n, err := m.rd.Read(m.buf[m.w:])
		m.w += n
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if m.w-m.r < need {
				return err // nothing lost: read again later
			}
		default:
			m.err = err
		}
	}
	return nil
}

// grow makes room for need unread bytes from the start of the buffer.
func (m *msgReader) grow(need int) {
	var nb []byte
	switch {
	case need <= len(m.buf):
		nb = m.buf // compacting is enough
	case need <= largeReadBuf:
		nb = *largeBufs.Get().(*[]byte)
	default:
		nb = make([]byte, need)
	}
	copy(nb, m.buf[m.r:m.w])
	if &nb[0] != &m.buf[0] {
		m.release()
	}
	m.buf, m.w, m.r = nb, m.w-m.r, 0
}

// shrink goes back to the idle buffer once nothing is buffered.
func (m *msgReader) shrink() {
	if m.small != nil && len(m.buf) != len(m.small) {
		m.release()
		m.buf = m.small
	}
}

func (m *msgReader) release() {
	if len(m.buf) == largeReadBuf && m.small != nil {
		b := m.buf
		largeBufs.Put(&b)
	}
}

// ready reports whether a whole message is buffered: the next call to next
// will not block. Writes are flushed when it is false, so that nothing
// waits in a buffer while the relay blocks on a read.
func (m *msgReader) ready() bool {
	if m.w-m.r < 5 {
		return false
	}
	n := int(int32(binary.BigEndian.Uint32(m.buf[m.r+1 : m.r+5])))
	return n >= 4 && m.w-m.r >= n+1
}

// buffered reports how many bytes are already read and not yet returned,
// so that writes can be batched and flushed only when the peer has nothing
// more queued.
func (m *msgReader) buffered() int { return m.w - m.r }

// errorResponse encodes an ErrorResponse with severity, SQLSTATE and message.
func errorResponse(severity, code, message string) []byte {
	body := make([]byte, 0, 64+len(message))
	add := func(f byte, s string) {
		body = append(body, f)
		body = append(body, s...)
		body = append(body, 0)
	}
	add('S', severity)
	add('V', severity)
	add('C', code)
	add('M', message)
	body = append(body, 0)
	out := make([]byte, 5, 5+len(body))
	out[0] = 'E'
	binary.BigEndian.PutUint32(out[1:], uint32(4+len(body)))
	return append(out, body...)
}
