package server_test

import (
	"context"
	"fmt"
	"github.com/relay/relay/internal/wstest"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestShutdownClosesWith1012AfterQueued(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	var cs []*wstest.Client
	for i := range 3 {
		c := wstest.Dial(t, n.wsURL(fmt.Sprintf("name=c%d", i)), nil)
		c.Welcome()
		cs = append(cs, c)
	}
	const queued = 50
	for i := range queued {
		if status, _ := notify(t, n, fmt.Sprintf(`{"message":"n%d"}`, i)); status != 200 {
			t.Fatalf("notify %d: %d", i, status)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.srv.Shutdown(ctx)

	if status, body := request(t, http.MethodGet, n.url+"/readyz", "", ""); status != 503 {
		t.Errorf("readyz while shut down = %d %v", status, body)
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
	if _, err := wstest.TryDial(t, n.wsURL(""), nil); err == nil {
		t.Fatal("upgrade accepted after shutdown")
	}
}
