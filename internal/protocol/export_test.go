package protocol

// Test-only API: the package's tests read frames back and build them from
// raw payloads; relay itself only encodes.

// TextFrame wraps an already-encoded JSON payload in a WebSocket text frame.
func TextFrame(payload []byte) Frame {
	b := make([]byte, maxHeader+len(payload))
	copy(b[maxHeader:], payload)
	return frameInPlace(b)
}

// Payload returns the JSON inside the frame.
func (f Frame) Payload() []byte {
	switch n := f[1] & 0x7f; n {
	case 126:
		return f[4:]
	case 127:
		return f[10:]
	default:
		return f[2:]
	}
}
