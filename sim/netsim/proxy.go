package netsim

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds a proxy's dial to a member's real route address
// (loopback: it answers or refuses at once unless the member hangs).
const dialTimeout = 2 * time.Second

// proxy carries the connections member from opens to member to.
type proxy struct {
	pair
	ln    net.Listener
	url   string
	links map[*link]struct{} // open connections; guarded by Hub.mu
}

// link is one proxied connection: in is from's side (accepted), out is
// to's side (dialed).
type link struct{ in, out net.Conn }

func (l *link) close() {
	_ = l.in.Close()
	_ = l.out.Close()
}

// cutLocked closes every open connection of the proxy (Hub.mu held) and
// returns how many.
func (p *proxy) cutLocked() int {
	n := len(p.links)
	for l := range p.links {
		l.close()
		delete(p.links, l)
	}
	return n
}

// serve accepts connections until the proxy's listener is closed.
func (h *Hub) serve(p *proxy) {
	defer h.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry.
			h.log.Warn("proxy accept failed", "from", p.from, "to", p.to, "err", err)
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		h.wg.Add(1) // this goroutine is counted, so Close's Wait has not returned
		go h.handle(p, c)
	}
}

// handle connects an accepted connection to the target member, if the
// faults in force allow, and copies bytes both ways until either side
// closes or a fault cuts the pair.
func (h *Hub) handle(p *proxy, in net.Conn) {
	defer h.wg.Done()
	h.mu.Lock()
	addr, registered := h.addrs[p.to]
	allowed := !h.closed && registered && h.connectedLocked(p.from, p.to)
	h.mu.Unlock()
	if !allowed {
		_ = in.Close()
		h.log.Debug("connection refused", "from", p.from, "to", p.to, "registered", registered)
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	out, err := d.DialContext(h.ctx, "tcp", addr)
	if err != nil {
		_ = in.Close()
		h.log.Debug("dialing member failed", "from", p.from, "to", p.to, "addr", addr, "err", err)
		return
	}
	l := &link{in: in, out: out}
	// A fault may have come while dialing: check again while registering
	// the link, so a cut never misses it.
	h.mu.Lock()
	if h.closed || !h.connectedLocked(p.from, p.to) {
		h.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	h.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(l, out, in)
	}()
	pipe(l, in, out)
	wg.Wait()
	l.close()
	h.mu.Lock()
	delete(p.links, l)
	h.mu.Unlock()
}

// pipe copies src to dst. At src's end of stream it passes the half close
// on; on an error (a cut, a reset) it closes the whole link so the other
// direction ends too.
func pipe(l *link, dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		l.close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	l.close()
}
