package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxServerMessage bounds messages from PostgreSQL (its own limit is 1 GB).
const maxServerMessage = 1 << 30

// relay copies messages both ways until either side ends. It frames
// messages rather than copying bytes blindly so that it knows the
// transaction state (from ReadyForQuery) and can refuse oversized client
// messages; writes are batched and flushed when the reader has drained what
// arrived.
func (ss *session) relay(hc *pgconn.HijackedConn) {
	server := hc.Conn
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = server.Close()
			_ = ss.c.Close()
		})
	}
	done := make(chan struct{})
	var serverErr error
	go func() {
		defer close(done)
		serverErr = ss.serverToClient(server)
		closeBoth()
	}()
	clientErr := ss.clientToServer(server)
	if errors.Is(clientErr, ErrMessageTooLarge) {
		_, _ = ss.c.Write(errorResponse("FATAL", "08P01", clientErr.Error()))
	}
	closeBoth()
	<-done
	if serverErr != nil && clientErr == nil {
		ss.s.log.Debug("server side ended", "err", serverErr)
	}
}

func (ss *session) clientToServer(server net.Conn) error {
	in := newMsgReader(ss.c, ss.s.cfg.MaxMessageSize)
	out := bufio.NewWriterSize(server, 16<<10)
	for {
		msg, err := in.next()
		if err != nil {
			return quiet(err)
		}
		if msg[0] == 'X' {
			// Terminate: the client is done; so is its server connection.
			_, _ = out.Write(msg)
			_ = out.Flush()
			return nil
		}
		if _, err := out.Write(msg); err != nil {
			return err
		}
		if in.buffered() == 0 {
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
}

func (ss *session) serverToClient(server net.Conn) error {
	in := newMsgReader(server, maxServerMessage)
	out := bufio.NewWriterSize(ss.c, 16<<10)
	for {
		msg, err := in.next()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				// We closed it: the client is gone.
				return nil
			}
			// The server went away under a live client: say so.
			_, _ = out.Write(errorResponse("FATAL", "57P01", "holdfast proxy: the server connection was lost"))
			_ = out.Flush()
			return err
		}
		if _, err := out.Write(msg); err != nil {
			return err
		}
		if in.buffered() == 0 {
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
}

// quiet maps the errors of a connection closed at either end to nil.
func quiet(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// pickReader chooses the qualifying replica with the fewest sessions.
func (s *Server) pickReader() (Target, bool) {
	rs := s.router.Readers()
	if len(rs) == 0 {
		return Target{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	best := rs[0]
	for _, r := range rs[1:] {
		if s.readerLoad[r.Name] < s.readerLoad[best.Name] {
			best = r
		}
	}
	return best, true
}
