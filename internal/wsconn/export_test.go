package wsconn

import "net"

// Test-only API.

// Queued returns the bytes waiting to be written: at most QueueBytes of
// data, plus any control frames (pings, pongs, the close), which are never
// refused.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0
	}
	return c.queued
}

// NewConn puts raw in the pool as an upgraded connection would be, so that
// a test can watch the order of the pool's writes on a fake socket.
func (p *Pool) NewConn(raw net.Conn) *Conn { return p.newConn(raw) }
