package broker

// Test-only API.

// Peer returns another broker on the same in-process bus, as if it were a
// second node. It lets tests run several hubs in one process.
func (m *Memory) Peer() *Memory {
	return &Memory{bus: m.bus}
}
