package wsconn

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
