package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// clientSource is the source of a connection no node opened (a client).
const clientSource = -1

// proxy forwards one node's advertised RPC address to its real port, and
// cuts connections from nodes the partition separates from it.
type proxy struct {
	target int // the node behind the proxy
	lis    net.Listener
	dest   string
	// sourceOf names the node that opened a connection, from the
	// connection's two ends as the dialer sees them (its local address,
	// the proxy's address); clientSource when it was not a node.
	sourceOf func(local, peer *net.TCPAddr) int

	mu sync.Mutex
	// blocked reports whether traffic from node src to the target is cut.
	blocked func(src int) bool
	conns   map[*proxyConn]struct{} // open connections. Guarded by mu.
	closed  bool
	wg      sync.WaitGroup
}

// proxyConn is one forwarded connection.
type proxyConn struct {
	src        int
	downstream net.Conn // from the dialer
	upstream   net.Conn // to the node; nil while held
	held       chan struct{}
}

func newProxy(target int, listenAddr, dest string, sourceOf func(local, peer *net.TCPAddr) int) (*proxy, error) {
	lis, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("proxy for node %d: %w", target, err)
	}
	p := &proxy{
		target:   target,
		lis:      lis,
		dest:     dest,
		sourceOf: sourceOf,
		blocked:  func(int) bool { return false },
		conns:    make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.lis.Accept()
		if err != nil {
			return
		}
		src := clientSource
		remote, ok1 := conn.RemoteAddr().(*net.TCPAddr)
		local, ok2 := conn.LocalAddr().(*net.TCPAddr)
		if ok1 && ok2 {
			src = p.sourceOf(remote, local)
		}
		pc := &proxyConn{src: src, downstream: conn, held: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = conn.Close()
			return
		}
		p.conns[pc] = struct{}{}
		cut := src != clientSource && p.blocked(src)
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(pc, cut)
	}
}

// serve forwards pc, or, when its source is cut off, holds it silent (as a
// dropped network would) until the partition heals, then closes it.
func (p *proxy) serve(pc *proxyConn, cut bool) {
	defer p.wg.Done()
	defer p.forget(pc)
	if cut {
		<-pc.held
		return
	}
	up, err := net.Dial("tcp", p.dest)
	if err != nil {
		return
	}
	p.mu.Lock()
	// A partition installed while this connection was being dialled did
	// not see it (it had no upstream yet): decide again, or it would stay
	// open across the partition.
	if pc.src != clientSource && p.blocked(pc.src) {
		p.mu.Unlock()
		_ = up.Close()
		<-pc.held
		return
	}
	pc.upstream = up
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(up, pc.downstream)
	go pipe(pc.downstream, up)
	<-done
	<-done
}

func (p *proxy) forget(pc *proxyConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, pc)
	_ = pc.downstream.Close()
	if pc.upstream != nil {
		_ = pc.upstream.Close()
	}
}

// setBlocked installs the partition rule: connections open from a source
// it now cuts are closed (the peer sees its calls fail), new ones are held.
// Held connections of sources no longer cut are closed, so they redial.
func (p *proxy) setBlocked(blocked func(src int) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = blocked
	for pc := range p.conns {
		if pc.src == clientSource {
			continue
		}
		cut := blocked(pc.src)
		switch {
		case cut && pc.upstream != nil:
			_ = pc.downstream.Close()
			_ = pc.upstream.Close()
		case !cut && pc.upstream == nil:
			select {
			case <-pc.held:
			default:
				close(pc.held)
			}
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	_ = p.lis.Close()
	for pc := range p.conns {
		_ = pc.downstream.Close()
		if pc.upstream != nil {
			_ = pc.upstream.Close()
		}
		select {
		case <-pc.held:
		default:
			close(pc.held)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// socketOwner finds which of pids has the TCP socket from local to peer
// (the dialer's end of a connection the proxy accepted), by the socket's
// inode in /proc/net/tcp and the processes' file descriptors, and returns
// the value pids maps it to. ok is false when none does.
func socketOwner(local, peer *net.TCPAddr, pids map[int]int) (owner int, ok bool) {
	inode, err := tcpInode(local, peer)
	if err != nil || inode == "" {
		return 0, false
	}
	want := "socket:[" + inode + "]"
	for pid, node := range pids {
		fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
			if err == nil && link == want {
				return node, true
			}
		}
	}
	return 0, false
}

// tcpInode returns the inode of the IPv4 TCP socket from local to peer,
// from /proc/net/tcp. Both ends must match: Linux gives the same ephemeral
// port to connections with different destinations, so the local address
// alone can name another process's socket (the harness's own connection to
// a node's real port was taken for a node's, and so a node's Raft
// connection for a client's, which a partition never cuts).
func tcpInode(local, peer *net.TCPAddr) (string, error) {
	wantLocal, err := procTCPAddr(local)
	if err != nil {
		return "", err
	}
	wantPeer, err := procTCPAddr(peer)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		// Inode 0: a socket no process holds any more (TIME_WAIT).
		if len(fields) > 9 && fields[1] == wantLocal && fields[2] == wantPeer && fields[9] != "0" {
			return fields[9], nil
		}
	}
	return "", scanner.Err()
}

// procTCPAddr writes addr as /proc/net/tcp does: the 32-bit address in host
// order (little-endian here) and the port big-endian, both in hex.
func procTCPAddr(addr *net.TCPAddr) (string, error) {
	ip := addr.IP.To4()
	if ip == nil {
		return "", errors.New("not IPv4")
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], addr.Port), nil
}
