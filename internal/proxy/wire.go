package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrMessageTooLarge is returned for a message over the configured limit.
var ErrMessageTooLarge = errors.New("message too large")

// msgReader reads PostgreSQL v3 messages (type byte, int32 length including
// itself, body) without decoding them: the relay only looks at a few type
// bytes, and copying raw frames keeps the hot path allocation-free.
type msgReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newMsgReader(r io.Reader, max int) *msgReader {
	return &msgReader{r: bufio.NewReaderSize(r, 16<<10), max: max}
}

// next returns the next whole message (header included). The slice is
// valid until the following call.
func (m *msgReader) next() ([]byte, error) {
	hdr, err := m.r.Peek(5)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:5])))
	if n < 4 {
		return nil, fmt.Errorf("message %q has invalid length %d", hdr[0], n)
	}
	if n > m.max {
		return nil, fmt.Errorf("message %q of %d bytes: %w (limit %d)", hdr[0], n, ErrMessageTooLarge, m.max)
	}
	total := n + 1
	if cap(m.buf) < total {
		m.buf = make([]byte, total)
	}
	m.buf = m.buf[:total]
	if _, err := io.ReadFull(m.r, m.buf); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return m.buf, nil
}

// buffered reports whether more input is already buffered, so that writes
// can be batched and flushed only when the peer has nothing more queued.
func (m *msgReader) buffered() int { return m.r.Buffered() }

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
