package hub

// Test-only API: seams to pause the hub between steps.

// Register's steps a hook is called at.
const (
	StepCounted = stepCounted
	StepVisible = stepVisible
)

// SetRegisterHook calls f at each of Register's steps, in Register's
// goroutine. Set it before the hub is used.
func SetRegisterHook(h *Hub, f func(step string)) { h.hooks.register = f }

// SetRemovedHook calls f after the control goroutine has handled each
// removal, whatever came of it. Set it before the hub is used.
func SetRemovedHook(h *Hub, f func(c *Client, room string)) { h.hooks.removed = f }
