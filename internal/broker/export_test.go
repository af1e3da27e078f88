package broker

// Test-only API.

// Peer returns another broker on the same in-process bus, as if it were a
// second node. It lets tests run several hubs in one process.
func (m *Memory) Peer() *Memory {
	return &Memory{bus: m.bus}
}

// MayHaveRun exposes how PublishStream tells a failed attempt that may
// have run in Redis from one that certainly did not.
var MayHaveRun = mayHaveRun

// Tune exposes the client options NewRedis sets.
var Tune = tune
