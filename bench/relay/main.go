//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: relay LISTEN BACKEND")
		os.Exit(2)
	}
	listen, err := sockaddr(os.Args[1])
	check("listen address", err)
	backend, err := sockaddr(os.Args[2])
	check("backend address", err)
	// The loop is the only goroutine that runs: keeping it on one thread
	// keeps the Go scheduler out of the measurement.
	runtime.LockOSThread()
	check("serve", serve(listen, backend))
}

func check(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay: %s: %v\n", what, err)
		os.Exit(1)
	}
}

func sockaddr(hostport string) (*syscall.SockaddrInet4, error) {
	a, err := net.ResolveTCPAddr("tcp4", hostport)
	if err != nil {
		return nil, err
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	return sa, nil
}

func serve(listen, backend *syscall.SockaddrInet4) error {
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("reuseaddr: %w", err)
	}
	if err := syscall.Bind(lfd, listen); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(lfd, 1024); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	if err := watch(ep, lfd); err != nil {
		return err
	}
	peer := map[int]int{}
	buf := make([]byte, 64<<10)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(ep, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				if err := accept(ep, lfd, backend, peer); err != nil {
					fmt.Fprintln(os.Stderr, "relay:", err)
				}
				continue
			}
			other, ok := peer[fd]
			if !ok {
				continue // closed earlier in this batch with its peer
			}
			if !copyOnce(fd, other, buf) {
				delete(peer, fd)
				delete(peer, other)
				syscall.Close(fd)
				syscall.Close(other)
			}
		}
	}
}

// accept takes one client and connects it to its own backend connection.
func accept(ep, lfd int, backend *syscall.SockaddrInet4, peer map[int]int) error {
	c, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	b, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err == nil {
		err = syscall.Connect(b, backend)
		if err != nil {
			syscall.Close(b)
		}
	}
	if err != nil {
		syscall.Close(c)
		return fmt.Errorf("connect backend: %w", err)
	}
	for _, fd := range []int{c, b} {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
			return fmt.Errorf("nodelay: %w", err)
		}
		if err := watch(ep, fd); err != nil {
			return err
		}
	}
	peer[c], peer[b] = b, c
	return nil
}

func watch(ep, fd int) error {
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// copyOnce moves what one read returns from src to dst, and says whether
// both ends are still open.
func copyOnce(src, dst int, buf []byte) bool {
	n, err := syscall.Read(src, buf)
	if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) {
		return true
	}
	if n <= 0 || err != nil {
		return false
	}
	for off := 0; off < n; {
		w, err := syscall.Write(dst, buf[off:n])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return false
		}
		off += w
	}
	return true
}
