package wsconn

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/relay/relay/internal/protocol"
)

// Allow counts one frame from the client against its rate limit and
// reports whether it may be handled. Data frames are counted by the
// session that reads them, control frames (pings) as their pongs are
// written: a flood of either is held to the same limit.
func (c *Conn) Allow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allowLocked(time.Now())
}

// allowLocked is Allow with c.mu held. A client refused without a pause of
// a second or more for SustainedLimit is not bursting but flooding: it is
// closed with 1008 rather than answered with error frames forever.
func (c *Conn) allowLocked(now time.Time) bool {
	r := c.pool.opts.RateLimit
	if r <= 0 {
		return true
	}
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(rate.Limit(r), max(1, int(2*r)))
	}
	if c.limiter.AllowN(now, 1) {
		return true
	}
	if now.Sub(c.overLast) > time.Second {
		c.overSince = now
	}
	c.overLast = now
	if sustained := c.pool.opts.SustainedLimit; sustained > 0 && now.Sub(c.overSince) >= sustained && !c.closeQueued && !c.closed {
		c.queueCloseLocked(protocol.CloseRateLimited.Status, protocol.CloseRateLimited.Reason)
		c.closeReq = true
		c.armForceCloseLocked(slowCloseGrace)
	}
	return false
}
