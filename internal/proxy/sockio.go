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
	return &sockIO{rc: rc}
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		n, _, errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		return errno != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EINTR:
		return 0, nil
	case errno != 0:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

func (s *sockIO) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		var n uintptr
		var errno syscall.Errno
		err := s.rc.Write(func(fd uintptr) bool {
			n, _, errno = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done))
			return errno != syscall.EAGAIN
		})
		switch {
		case err != nil:
			return done, err
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return done, errno
		}
		done += int(n)
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
