package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

func TestShutdownClosesWith1012AfterQueued(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nil)
	var cs []*wstest.Client
	for i := range 3 {
		c := wstest.Dial(t, n.WS(fmt.Sprintf("name=c%d", i)), nil)
		c.Welcome()
		cs = append(cs, c)
	}
	const queued = 50
	for i := range queued {
		if status, _ := notify(t, n, fmt.Sprintf(`{"message":"n%d"}`, i)); status != 200 {
			t.Fatalf("notify %d: %d", i, status)
		}
	}

	// Draining (the first step of a shutdown): a load balancer sees the
	// node unready and new upgrades are refused, while clients stay.
	n.Node().Drain()
	if status, body := request(t, http.MethodGet, n.URL()+"/readyz", "", ""); status != 503 {
		t.Errorf("readyz while draining = %d %v", status, body)
	}
	if _, err := wstest.TryDial(t, n.WS(""), nil); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("upgrade while draining: %v, want 503", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Node().Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		got := 0
		for f := range c.Frames {
			if f.Type == "notification" {
				if f.Text() != fmt.Sprintf("n%d", got) {
					t.Fatalf("notification %d = %s", got, f)
				}
				got++
			}
			if got == queued {
				break
			}
		}
		if status := c.Closed(); status != websocket.StatusServiceRestart {
			t.Fatalf("close status %v, want 1012 after %d notifications", status, got)
		}
	}
}
