package hub_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes the hubs it starts: a presence loop or retry left
// running is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
