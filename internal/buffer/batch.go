package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Write is one write a client handed to the buffer: applied by the handler
// registered for Kind, at most once per Key.
type Write struct {
	Kind       string
	Key        string
	Payload    []byte // JSON
	AcceptedAt time.Time
	// Attempts counts the permanent failures so far (the dead-letter
	// limit applies to it), LastError is the latest one.
	Attempts  int
	LastError string
}

// A batch is the JetStream message that carries concurrent writes:
//
//	'H' 1 (format version), uvarint count, then per write:
//	uvarint len + kind, uvarint len + key, uvarint len + payload,
//	varint accepted-at (Unix nanoseconds), uvarint attempts,
//	uvarint len + last error
const (
	batchMagic   = 'H'
	batchVersion = 1
	// maxBatchWrites bounds the count a decoder accepts.
	maxBatchWrites = 1 << 20
)

// ErrBadBatch is returned for bytes that are not a batch.
var ErrBadBatch = errors.New("not a holdfast write batch")

func appendBatch(b []byte, ws []Write) []byte {
	b = append(b, batchMagic, batchVersion)
	b = binary.AppendUvarint(b, uint64(len(ws)))
	for _, w := range ws {
		b = appendField(b, w.Kind)
		b = appendField(b, w.Key)
		b = binary.AppendUvarint(b, uint64(len(w.Payload)))
		b = append(b, w.Payload...)
		b = binary.AppendVarint(b, w.AcceptedAt.UnixNano())
		b = binary.AppendUvarint(b, uint64(w.Attempts))
		b = appendField(b, w.LastError)
	}
	return b
}

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeBatch decodes a batch; payloads are copies (b may be reused).
func decodeBatch(b []byte) ([]Write, error) {
	if len(b) < 2 || b[0] != batchMagic {
		return nil, ErrBadBatch
	}
	if b[1] != batchVersion {
		return nil, fmt.Errorf("%w: format version %d (this holdfast reads %d)", ErrBadBatch, b[1], batchVersion)
	}
	r := reader{b: b[2:]}
	n := r.uvarint()
	if r.err != nil || n > maxBatchWrites || n > uint64(len(r.b)) {
		return nil, fmt.Errorf("%w: bad write count", ErrBadBatch)
	}
	ws := make([]Write, 0, n)
	for i := uint64(0); i < n; i++ {
		kind := r.bytes()
		key := r.bytes()
		payload := r.bytes()
		at := r.varint()
		attempts := r.uvarint()
		lastErr := r.bytes()
		if r.err == nil && attempts > 1<<20 {
			r.err = errors.New("attempt count out of range")
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: write %d: %v", ErrBadBatch, i, r.err)
		}
		ws = append(ws, Write{Kind: string(kind), Key: string(key), Payload: append([]byte(nil), payload...), AcceptedAt: time.Unix(0, at).UTC(),
			Attempts: int(attempts), LastError: string(lastErr)})
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last write", ErrBadBatch, len(r.b))
	}
	return ws, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("field of %d bytes, %d left", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
