package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// relay_broker_subscriptions shows what the node is subscribed to: the
// broadcast, and one topic per local user and room, given back when the
// last local member goes.
func TestSubscriptionsMetric(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_RATE_LIMIT": "0"})
	want := func(v int) {
		t.Helper()
		line := fmt.Sprintf("\nrelay_broker_subscriptions %d\n", v)
		testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if m := metricsText(t, n); !strings.Contains(m, line) {
				return fmt.Errorf("/metrics lacks %q", strings.TrimSpace(line))
			}
			return nil
		})
	}
	want(1) // the broadcast
	a := wstest.Dial(t, n.WS("name=ann"), nil)
	a.Welcome()
	a.Send(`{"type":"join","room":"ops"}`)
	a.Expect("own join", wstest.IsEvent("join", "ann", "ops"))
	want(4) // + user:ann, room:lobby, room:ops
	_ = a.WS.CloseNow()
	want(1)
}
