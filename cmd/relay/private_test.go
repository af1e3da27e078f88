package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// Private rooms, who and the server API across the loopback cluster: three
// relay processes on one redis-server, nginx in front.

const clusterJWTSecret = "cluster-jwt-secret"

func clusterToken(t *testing.T, sub string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	s, err := auth.MintWith(clusterJWTSecret, sub, ttl, extra)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// api calls the server API with key ("" for none) and decodes the answer.
func api(t *testing.T, method, u, key, body string) (int, map[string]any) {
	t.Helper()
	return testkit.DoJSON(t, method, u, key, body)
}

func TestClusterPrivateRooms(t *testing.T) {
	t.Parallel()
	c := startCluster(t, "RELAY_JWT_SECRET="+clusterJWTSecret, "RELAY_WHO_LIMIT=4")
	lb := c.lb
	wsURLs := []string{"ws://" + lb.Addr + "/ws"}
	for _, p := range c.nodes {
		wsURLs = append(wsURLs, "ws://"+p.addr+"/ws")
	}
	// dial connects sub to wsURLs[i] (0 is nginx).
	dial := func(t *testing.T, i int, sub string, extra map[string]any) *wstest.Client {
		t.Helper()
		cl := wstest.Dial(t, wsURLs[i]+"?token="+url.QueryEscape(clusterToken(t, sub, time.Hour, extra)), nil)
		cl.Welcome()
		return cl
	}
	join := func(t *testing.T, cl *wstest.Client, user, room string) {
		t.Helper()
		cl.SendJSON(map[string]any{"type": "join", "room": room})
		cl.Expect(user+" joins "+room, wstest.IsEvent("join", user, room))
	}

	t.Run("who and the room API see every node", func(t *testing.T) {
		var members []*wstest.Client
		for i, user := range []string{"who-a", "who-b", "who-c", "who-d", "who-a"} {
			cl := dial(t, i%len(wsURLs), user, nil)
			join(t, cl, user, "who-room")
			members = append(members, cl)
		}
		members[1].SendJSON(map[string]any{"type": "who", "room": "who-room"})
		f := members[1].Expect("who", wstest.IsWho("who-room"))
		if f.Count() != 5 || !slices.Equal(f.Users, []string{"who-a", "who-b", "who-c", "who-d"}) || f.Truncated {
			t.Fatalf("who across the cluster = %s", f.Raw)
		}
		e := dial(t, 3, "who-e", nil)
		join(t, e, "who-e", "who-room")
		e.SendJSON(map[string]any{"type": "who", "room": "who-room"})
		if f := e.Expect("who", wstest.IsWho("who-room")); f.Count() != 6 || len(f.Users) != 4 || !f.Truncated {
			t.Fatalf("who past RELAY_WHO_LIMIT = %s", f.Raw)
		}
		outsider := dial(t, 2, "who-x", nil)
		outsider.SendJSON(map[string]any{"type": "who", "room": "who-room"})
		outsider.Expect("who from a non-member", wstest.IsError("not_member"))

		status, body := api(t, http.MethodGet, lb.URL()+"/api/rooms/who-room", clusterAPIKey, "")
		if status != 200 || body["online"] != 6.0 || len(body["users"].([]any)) != 4 || body["truncated"] != true {
			t.Fatalf("GET /api/rooms/who-room = %d %v", status, body)
		}
		status, body = api(t, http.MethodGet, lb.URL()+"/api/rooms?after=who-rol&limit=1", clusterAPIKey, "")
		if status != 200 || fmt.Sprint(body["rooms"]) != "[map[online:6 room:who-room]]" {
			t.Fatalf("GET /api/rooms = %d %v", status, body)
		}
		for _, path := range []string{"/api/rooms", "/api/rooms/who-room"} {
			if status, _ := api(t, http.MethodGet, lb.URL()+path, "", ""); status != 401 {
				t.Errorf("GET %s without the key through nginx = %d, want 401", path, status)
			}
		}
		if status, _ := api(t, http.MethodGet, lb.URL()+"/api/rooms?limit=-1", clusterAPIKey, ""); status != 400 {
			t.Errorf("bad limit through nginx = %d, want 400", status)
		}
	})

	t.Run("disconnect reaches every node", func(t *testing.T) {
		var conns []*wstest.Client
		for i := range wsURLs {
			conns = append(conns, dial(t, i, "dis-alice", nil))
		}
		other := dial(t, 1, "dis-bob", nil)
		status, body := api(t, http.MethodPost, lb.URL()+"/api/disconnect", clusterAPIKey, `{"user":"dis-alice","reason":"account closed"}`)
		if status != 200 {
			t.Fatalf("disconnect = %d %v", status, body)
		}
		for i, cl := range conns {
			if ce := cl.CloseError(); ce.Code != 4000 || ce.Reason != "account closed" {
				t.Fatalf("dis-alice on %s closed with %d %q", wsURLs[i], ce.Code, ce.Reason)
			}
		}
		other.SendJSON(map[string]any{"type": "ping"})
		other.Expect("bob still connected", wstest.IsPong)
		for _, body := range []string{`{}`, `{"user":""}`, `[1]`} {
			if status, _ := api(t, http.MethodPost, lb.URL()+"/api/disconnect", clusterAPIKey, body); status != 400 {
				t.Errorf("disconnect %s = %d, want 400", body, status)
			}
		}
		if status, _ := api(t, http.MethodPost, lb.URL()+"/api/disconnect", "wrong", `{"user":"dis-bob"}`); status != 401 {
			t.Errorf("disconnect with a wrong key = %d, want 401", status)
		}
	})

	t.Run("remove reaches every node", func(t *testing.T) {
		watcher := dial(t, 2, "rm-watcher", nil)
		join(t, watcher, "rm-watcher", "rm-room")
		var conns []*wstest.Client
		for i := range wsURLs {
			cl := dial(t, i, "rm-alice", nil)
			join(t, cl, "rm-alice", "rm-room")
			conns = append(conns, cl)
		}
		status, body := api(t, http.MethodPost, lb.URL()+"/api/rooms/rm-room/remove", clusterAPIKey, `{"user":"rm-alice","reason":"muted"}`)
		if status != 200 {
			t.Fatalf("remove = %d %v", status, body)
		}
		for i, cl := range conns {
			// Its own leave carries the reason; those of rm-alice's other
			// connections, the room's usual leaves, do not.
			cl.Expect("own leave with its reason on "+wsURLs[i], func(f wstest.Frame) bool {
				return wstest.IsEvent("leave", "rm-alice", "rm-room")(f) && f.Reason == "muted"
			})
		}
		// The watcher hears every one of them leave, down to itself alone.
		watcher.Expect("last leave", func(f wstest.Frame) bool {
			return wstest.IsEvent("leave", "rm-alice", "rm-room")(f) && f.Count() == 1
		})
		watcher.SendJSON(map[string]any{"type": "who", "room": "rm-room"})
		if f := watcher.Expect("who", wstest.IsWho("rm-room")); f.Count() != 1 || !slices.Equal(f.Users, []string{"rm-watcher"}) {
			t.Fatalf("who after the removal = %s", f.Raw)
		}
		if status, _ := api(t, http.MethodPost, lb.URL()+"/api/rooms/bad%20room/remove", clusterAPIKey, `{"user":"x"}`); status != 400 {
			t.Errorf("remove from a bad room = %d, want 400", status)
		}
	})

	t.Run("no private frame reaches a non-member", func(t *testing.T) {
		wstest.PrivateRooms{
			Nodes: wsURLs,
			Mint: func(sub string, ttl time.Duration, extra map[string]any) string {
				return clusterToken(t, sub, ttl, extra)
			},
			Notify: func(room, text string) {
				if status, body := post(t, lb.URL(), fmt.Sprintf(`{"room":%q,"message":%q}`, room, text)); status != 200 {
					t.Fatalf("notify: %d %v", status, body)
				}
			},
			Messages: 20,
		}.Run(t)
	})
}
