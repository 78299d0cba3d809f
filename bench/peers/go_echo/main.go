// Command go_echo is the Go peer echo server of cio's echo benchmarks.
//
// Usage: go_echo [CERT KEY] PORT
//
// The net package, one goroutine per connection, each looping Read into
// its own 64 KiB buffer and Write of what came (what io.Copy does, minus
// the splice(2) path io.Copy takes between two TCP connections, so every
// system echoes through user space). Go sets TCP_NODELAY by default.
// Under `taskset -c 0` Go sees one CPU, so GOMAXPROCS is 1, like the
// single-threaded event loops. Listens on 127.0.0.1; prints only errors;
// runs until killed.
//
// With CERT and KEY (PEM files), the same over crypto/tls: tls.Listen
// with that certificate and Go's defaults otherwise; each goroutine's
// first Read runs the handshake.
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"time"
)

func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 65536)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// listen opens the listener of args: [CERT KEY] PORT.
func listen(args []string) (net.Listener, error) {
	addr := "127.0.0.1:" + args[len(args)-1]
	if len(args) == 1 {
		return net.Listen("tcp4", addr)
	}
	cert, err := tls.LoadX509KeyPair(args[0], args[1])
	if err != nil {
		return nil, err
	}
	return tls.Listen("tcp4", addr, &tls.Config{Certificates: []tls.Certificate{cert}})
}

func main() {
	if len(os.Args) != 2 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go_echo [CERT KEY] PORT")
		os.Exit(2)
	}
	ln, err := listen(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_echo:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go_echo: accept:", err)
			time.Sleep(10 * time.Millisecond) // e.g. out of fds: no busy loop
			continue
		}
		go echo(c)
	}
}
