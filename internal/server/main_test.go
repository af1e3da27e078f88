package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes what it opens: a goroutine left behind after the
// connections close is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
