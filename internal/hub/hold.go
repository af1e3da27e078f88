package hub

import (
	"github.com/relay/relay/internal/protocol"
)

// Holding: while a client is brought up to date (a resume replays what it
// missed, a join replays a room's latest messages), live frames for it are
// held back, so that it gets its own frames and the replay first and then
// the live ones, each stream in order. The fan-out path pays one atomic load
// per receiver for this.

// send queues a fan-out frame for c, or holds it while c is catching up.
func (c *Client) send(f []byte) bool {
	if c.holding.Load() {
		c.holdMu.Lock()
		if c.holding.Load() {
			defer c.holdMu.Unlock()
			if c.heldBytes+len(f) > c.holdLimit {
				c.overflow = true
				return false
			}
			c.held = append(c.held, f)
			c.heldBytes += len(f)
			return true
		}
		c.holdMu.Unlock() // released meanwhile: the held frames are out
	}
	return c.conn.Send(f)
}

// hold starts holding c's live frames.
func (c *Client) hold() {
	c.holdMu.Lock()
	c.holding.Store(true)
	c.holdMu.Unlock()
}

// release queues first, then what was held, and lets live frames through.
// A client whose held frames overflowed cannot be brought up to date
// without a gap: it is closed as too slow, and may resume.
func (c *Client) release(first []protocol.Frame) (sent, dropped int) {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	for _, f := range first {
		if c.conn.Send(f) {
			sent++
		} else {
			dropped++
		}
	}
	for _, f := range c.held {
		if c.conn.Send(f) {
			sent++
		} else {
			dropped++
		}
	}
	c.held, c.heldBytes = nil, 0
	c.holding.Store(false)
	if c.overflow {
		c.overflow = false
		c.conn.CloseWith(protocol.CloseTooSlow.Status, protocol.CloseTooSlow.Reason, 0)
	}
	return sent, dropped
}
