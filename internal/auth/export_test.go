package auth

// Test-only API.

// Enabled reports whether a key is configured.
func (k APIKey) Enabled() bool { return k.enabled }
