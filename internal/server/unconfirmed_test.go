package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/redistest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// A node whose Redis answers late: "not sent" (503, unavailable) is said
// only of a message that was not sent, one that may have been gets an id
// to look up, and nothing is stored twice.

// slowRedisNode is a node whose Redis link goes through a proxy, with a
// few connections in its pool, as on a node that has been serving.
func slowRedisNode(t *testing.T) (*nodetest.Node, *testkit.Proxy) {
	t.Helper()
	srv := redistest.Start(t)
	p := testkit.StartProxy(t, srv.Addr())
	var logs testkit.Buffer
	n := nodetest.Start(t, map[string]string{
		"RELAY_REDIS_URL": "redis://" + p.Addr + "/0", "RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0",
	}, nodetest.Logs(&logs))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node log:\n%s", logs.String())
		}
	})
	testkit.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if s, _ := testkit.Do(t, http.MethodGet, n.URL()+"/readyz", "", ""); s != http.StatusOK {
			return fmt.Errorf("readyz %d", s)
		}
		return nil
	})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if s, body := notify(t, n, fmt.Sprintf(`{"message":"warm %d","room":"warm"}`, i)); s != http.StatusOK {
				t.Errorf("warm-up notify: %d %v", s, body)
			}
		})
	}
	wg.Wait()
	return n, p
}

// historyIDs reads room's history and counts each message id, and each
// text.
func historyIDs(t *testing.T, n *nodetest.Node, room string) (ids, texts map[string]int) {
	t.Helper()
	status, raw := testkit.Do(t, http.MethodGet, n.URL()+"/api/history?room="+room+"&limit=1000", n.Config.APIKey, "")
	if status != http.StatusOK {
		t.Fatalf("history of %s: %d %s", room, status, raw)
	}
	var h struct {
		Messages []struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("history of %s: %v: %s", room, err, raw)
	}
	ids, texts = make(map[string]int), make(map[string]int)
	for _, m := range h.Messages {
		var text string
		_ = json.Unmarshal(m.Data, &text)
		ids[m.ID]++
		texts[text]++
	}
	return ids, texts
}

// Replies 2–3 s late (the slow Redis): every notification is
// answered 200 (or 504 with an id), stored once, and none answered 503.
func TestNotifyWithSlowRedisIsStoredOnceAndNeverFalselyNotSent(t *testing.T) {
	t.Parallel()
	n, p := slowRedisNode(t)
	p.DelayReplies(2*time.Second, 3*time.Second)
	const count = 10
	status := make([]int, count)
	bodies := make([]map[string]any, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() {
			status[i], bodies[i] = notify(t, n, fmt.Sprintf(`{"message":"slow %d","room":"slow"}`, i))
		})
	}
	wg.Wait()
	p.DelayReplies(0, 0)
	_, texts := historyIDs(t, n, "slow")
	for i := range count {
		stored := texts[fmt.Sprintf("slow %d", i)]
		switch {
		case stored > 1:
			t.Errorf("notification %d stored %d times (answered %d %v)", i, stored, status[i], bodies[i])
		case status[i] == http.StatusOK && stored != 1:
			t.Errorf("notification %d answered 200 %v, stored %d times", i, bodies[i], stored)
		case status[i] == http.StatusServiceUnavailable && stored != 0:
			t.Errorf("notification %d answered 503 %v (not sent), but it was stored", i, bodies[i])
		case status[i] != http.StatusOK && status[i] != http.StatusServiceUnavailable && status[i] != http.StatusGatewayTimeout:
			t.Errorf("notification %d answered %d %v", i, status[i], bodies[i])
		}
	}
}

// Replies later than the node waits (5 s): a notification is answered 504
// with its id and a chat gets an `unconfirmed` error frame with its id;
// once Redis is fast again, each id is in its room's history, once.
func TestPublishPastTheDeadlineIsUnconfirmedAndFoundInHistory(t *testing.T) {
	t.Parallel()
	n, p := slowRedisNode(t)
	c := wstest.Dial(t, n.WS("name=ann"), nil)
	c.Welcome()
	// Registered (its session reads frames only then) and subscribed.
	c.Send(`{"type":"message","data":"ready"}`)
	c.Expect("own chat", wstest.IsChat("ready"))
	p.DelayReplies(5500*time.Millisecond, 5500*time.Millisecond)
	var status int
	var body map[string]any
	var wg sync.WaitGroup
	wg.Go(func() { status, body = notify(t, n, `{"message":"late note","room":"lobby"}`) })
	c.Send(`{"type":"message","data":"late chat"}`)
	frame := c.ExpectWithin(10*time.Second, "unconfirmed error", wstest.IsError("unconfirmed"))
	wg.Wait()
	p.DelayReplies(0, 0)

	if status != http.StatusGatewayTimeout || body["unconfirmed"] != true {
		t.Fatalf("notify past the deadline: %d %v; want 504 with unconfirmed true", status, body)
	}
	noteID, _ := body["id"].(string)
	if noteID == "" || frame.ID == "" || frame.Request != "message" {
		t.Fatalf("no id to look up: notify %v, chat error %s", body, frame.Raw)
	}
	ids, _ := historyIDs(t, n, "lobby")
	if ids[noteID] != 1 || ids[frame.ID] != 1 {
		t.Fatalf("in lobby's history: notification %s %d times, chat %s %d times; want each once (%v)",
			noteID, ids[noteID], frame.ID, ids[frame.ID], ids)
	}
}
