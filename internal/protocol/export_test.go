package protocol

// Test-only API: the package's tests read frames back; relay itself only
// encodes.

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
