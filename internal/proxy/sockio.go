package proxy

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// sockIO reads and writes a socket with raw read(2) and write(2) calls,
// still waiting for readiness (and honouring deadlines and Close) through
// the runtime's network poller.
//
// Why: the relay makes four socket calls per round trip. Through net.Conn
// each one is a runtime "syscall" section; a loopback write that also runs
// the receiver's TCP input and wakes it often lasts long enough for the
// runtime's monitor to hand the thread's P to another thread, which costs
// thread wake-ups and a monitor that polls every 20 µs. On a small machine
// shared with PostgreSQL that is most of the gap to a C event loop
// (docs/BENCHMARKS.md). The socket is non-blocking, so a raw call never
// blocks; it only does not tell the scheduler about itself.
type sockIO struct {
	rc syscall.RawConn
	// Scratch of the raw calls, so that a read or write allocates nothing:
	// a socket has one reader and one writer at a time (the relay's
	// goroutines take turns under the session's lock).
	rbuf, wbuf      []byte
	rn, wn          uintptr
	rerrno, werrno  syscall.Errno
	readFn, writeFn func(fd uintptr) bool
}

// fastIO returns c's reader-writer for the relay: raw calls for TCP and
// Unix sockets, c itself for anything else (TLS).
func fastIO(c net.Conn) io.ReadWriter {
	var sc syscall.Conn
	switch v := c.(type) {
	case *net.TCPConn:
		sc = v
	case *net.UnixConn:
		sc = v
	default:
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sockIO{rc: rc}
	s.readFn, s.writeFn = s.rawRead, s.rawWrite
	return s
}

// rawRead and rawWrite run inside RawConn.Read and Write: false (EAGAIN)
// makes them wait for readiness and call again.
func (s *sockIO) rawRead(fd uintptr) bool {
	s.rn, _, s.rerrno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
	return s.rerrno != syscall.EAGAIN
}

func (s *sockIO) rawWrite(fd uintptr) bool {
	s.wn, _, s.werrno = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&s.wbuf[0])), uintptr(len(s.wbuf)))
	return s.werrno != syscall.EAGAIN
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf = p
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case s.rerrno == syscall.EINTR:
		return 0, nil
	case s.rerrno != 0:
		return 0, s.rerrno
	case s.rn == 0:
		return 0, io.EOF
	}
	return int(s.rn), nil
}

func (s *sockIO) Write(p []byte) (int, error) {
	done := 0
	defer func() { s.wbuf = nil }()
	for done < len(p) {
		s.wbuf = p[done:]
		err := s.rc.Write(s.writeFn)
		switch {
		case err != nil:
			return done, err
		case s.werrno == syscall.EINTR:
			continue
		case s.werrno != 0:
			return done, s.werrno
		case s.wn == 0:
			return done, io.ErrShortWrite // never for a socket; never loop on it
		}
		done += int(s.wn)
	}
	return done, nil
}

// quiet reports whether the peer has sent nothing and not closed: an idle
// server connection that is fit to lend. It consumes nothing.
func (s *sockIO) quiet() bool {
	var b [1]byte
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		_, _, errno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return true
	})
	return err == nil && errno == syscall.EAGAIN
}
