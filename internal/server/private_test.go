package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/testkit"
	"github.com/relay/relay/internal/wstest"
)

// Private rooms, room tokens, who and the server API, end to end against an
// in-process node with the embedded broker. The same rules across nodes
// behind nginx: cmd/relay/private_test.go.

const jwtSecret = "private-rooms-secret"

func token(t *testing.T, sub string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	s, err := auth.MintWith(jwtSecret, sub, ttl, extra)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dialAs(t *testing.T, n *nodetest.Node, tok string) *wstest.Client {
	t.Helper()
	c := wstest.Dial(t, n.WS("token="+url.QueryEscape(tok)), nil)
	c.Welcome()
	return c
}

// roundTrip sends a ping and waits for its pong: every frame the server
// queued before it has arrived, and the connection is still up.
func roundTrip(c *wstest.Client) {
	c.SendJSON(map[string]any{"type": "ping"})
	c.Expect("pong", wstest.IsPong)
}

func joinFrame(room string) map[string]any { return map[string]any{"type": "join", "room": room} }

func chatFrame(room, text string) map[string]any {
	return map[string]any{"type": "message", "room": room, "data": text}
}

func TestTokenRoomsAndSend(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": jwtSecret, "RELAY_RATE_LIMIT": "0"})
	c := dialAs(t, n, token(t, "alice", time.Hour, map[string]any{
		"rooms": []string{"team-42", "support-*", "news"}, "send": []string{"team-42", "support-*"},
	}))
	for _, room := range []string{"team-42", "support-7", "news"} {
		c.SendJSON(joinFrame(room))
		c.Expect("own join of "+room, wstest.IsEvent("join", "alice", room))
	}
	for _, room := range []string{"team-43", "ops", "support"} {
		c.SendJSON(joinFrame(room))
		f := c.Expect("forbidden join of "+room, wstest.IsError("forbidden"))
		if f.Request != "join" || f.Room != room {
			t.Errorf("forbidden error %s does not say it answers the join of %s", f.Raw, room)
		}
	}
	c.SendJSON(chatFrame("news", "may I?"))
	if f := c.Expect("forbidden send to news", wstest.IsError("forbidden")); f.Request != "message" || f.Room != "news" {
		t.Errorf("forbidden send: %s", f.Raw)
	}
	c.SendJSON(chatFrame("lobby", "hello lobby"))
	c.Expect("forbidden send to lobby", wstest.IsError("forbidden"))
	c.Send("plain text goes to lobby")
	c.Expect("forbidden plain text", wstest.IsError("forbidden"))
	c.SendJSON(chatFrame("team-42", "hi team"))
	c.Expect("own chat", wstest.IsChat("hi team"))
	roundTrip(c) // still connected

	// Connection tokens with bad claims are refused at the upgrade.
	for name, extra := range map[string]map[string]any{
		"room token":   {"room": "team-42"},
		"bad pattern":  {"rooms": []string{"a b"}},
		"rooms string": {"rooms": "team-42"},
	} {
		_, err := wstest.TryDial(t, n.WS("token="+url.QueryEscape(token(t, "alice", time.Hour, extra))), nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
			t.Errorf("%s: dial error %v, want 401", name, err)
		}
	}
}

// A claim present with null is refused at the upgrade, not read as "no
// restriction"; an empty array grants nothing (issue 21, item 1).
func TestNullAndEmptyClaims(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": jwtSecret, "RELAY_RATE_LIMIT": "0"})
	for name, tc := range map[string]struct {
		extra map[string]any
		want  string
	}{
		"null rooms": {map[string]any{"rooms": nil}, `"error":"unauthorized: rooms claim is null`},
		"null send":  {map[string]any{"send": nil}, `"error":"unauthorized: send claim is null`},
		"null room":  {map[string]any{"room": nil}, `"error":"unauthorized: a room token cannot open a connection`},
	} {
		_, err := wstest.TryDial(t, n.WS("token="+url.QueryEscape(token(t, "mallory", time.Hour, tc.extra))), nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 401: {") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: dial error %v, want 401 with %s", name, err, tc.want)
		}
	}

	owner := dialAs(t, n, token(t, "olga", time.Hour, nil))
	owner.SendJSON(joinFrame("ops"))
	owner.Expect("olga joins ops", wstest.IsEvent("join", "olga", "ops"))

	// rooms: []: lobby only.
	c := dialAs(t, n, token(t, "mallory", time.Hour, map[string]any{"rooms": []string{}}))
	for _, room := range []string{"ops", "team-1"} {
		c.SendJSON(joinFrame(room))
		if f := c.Expect("forbidden join of "+room, wstest.IsError("forbidden")); f.Room != room {
			t.Errorf("forbidden join: %s", f.Raw)
		}
	}
	c.SendJSON(chatFrame("lobby", "lobby is allowed"))
	c.Expect("chat in lobby", wstest.IsChat("lobby is allowed"))
	owner.SendJSON(chatFrame("ops", "ops secret"))
	owner.Expect("olga's own chat", wstest.IsChat("ops secret"))
	roundTrip(owner)
	c.SendJSON(map[string]any{"type": "ping"})
	c.QuietUntil(wstest.IsPong, func(f wstest.Frame) bool { return f.Room == "ops" })

	// send: []: posts nowhere, not even where it is.
	d := dialAs(t, n, token(t, "mute", time.Hour, map[string]any{"send": []string{}}))
	d.SendJSON(joinFrame("ops"))
	d.Expect("mute joins ops", wstest.IsEvent("join", "mute", "ops"))
	for _, room := range []string{"ops", "lobby"} {
		d.SendJSON(chatFrame(room, "may I?"))
		if f := d.Expect("forbidden send to "+room, wstest.IsError("forbidden")); f.Room != room {
			t.Errorf("forbidden send: %s", f.Raw)
		}
	}
	roundTrip(d)
}

func TestGuestRooms(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_GUEST_ROOMS": "public-*, faq", "RELAY_RATE_LIMIT": "0"})
	c := wstest.Dial(t, n.WS("name=gina"), nil)
	c.Welcome()
	c.SendJSON(joinFrame("public-1"))
	c.Expect("join public-1", wstest.IsEvent("join", "gina", "public-1"))
	c.SendJSON(joinFrame("faq"))
	c.Expect("join faq", wstest.IsEvent("join", "gina", "faq"))
	c.SendJSON(joinFrame("staff"))
	c.Expect("forbidden staff", wstest.IsError("forbidden"))
	c.SendJSON(chatFrame("faq", "q"))
	c.Expect("guests send where they are", wstest.IsChat("q"))
	// Guests have no secret to sign room tokens with.
	c.SendJSON(map[string]any{"type": "join", "room": "staff", "token": "x.y.z"})
	f := c.Expect("room token without a secret", wstest.IsError("forbidden"))
	if !strings.Contains(f.Error, "RELAY_JWT_SECRET") {
		t.Errorf("error %q", f.Error)
	}
	roundTrip(c)
}

func TestRoomTokens(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": jwtSecret, "RELAY_RATE_LIMIT": "0"})
	c := dialAs(t, n, token(t, "alice", time.Hour, map[string]any{"rooms": []string{}}))
	forged, err := auth.MintWith("another-secret", "alice", time.Minute, map[string]any{"room": "vip"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, tok, want string }{
		{"none", "", "may not join"},
		{"other user", token(t, "bob", time.Minute, map[string]any{"room": "vip"}), "another user"},
		{"other room", token(t, "alice", time.Minute, map[string]any{"room": "vip2"}), "another room"},
		{"expired", token(t, "alice", -time.Minute, map[string]any{"room": "vip"}), "expired"},
		{"forged", forged, "signature"},
		{"connection token", token(t, "alice", time.Minute, nil), "not a room token"},
	} {
		join := joinFrame("vip")
		if tc.tok != "" {
			join["token"] = tc.tok
		}
		c.SendJSON(join)
		f := c.Expect(tc.name, wstest.IsError("forbidden"))
		if !strings.Contains(f.Error, tc.want) {
			t.Errorf("%s: error %q, want %q", tc.name, f.Error, tc.want)
		}
	}
	c.SendJSON(map[string]any{"type": "join", "room": "vip", "token": token(t, "alice", time.Minute, map[string]any{"room": "vip"})})
	c.Expect("join with a room token", wstest.IsEvent("join", "alice", "vip"))
	c.SendJSON(chatFrame("vip", "in"))
	c.Expect("chat in vip", wstest.IsChat("in"))
	c.SendJSON(map[string]any{"type": "leave", "room": "vip"})
	c.Expect("leave", wstest.IsEvent("leave", "alice", "vip"))
	c.SendJSON(joinFrame("vip")) // the grant lasts for the connection
	c.Expect("join again", wstest.IsEvent("join", "alice", "vip"))
	// A room token cannot open a connection (it would grant every room).
	_, err = wstest.TryDial(t, n.WS("token="+url.QueryEscape(token(t, "alice", time.Minute, map[string]any{"room": "vip"}))), nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("dial with a room token: %v, want 401", err)
	}
}

// A resume that lists a room the connection may not join (a private room,
// or one a room token granted: the handshake carries no room token) rejoins
// the others; the welcome names the refused room in forbidden, and nothing
// of it is sent.
func TestResumeForbiddenRooms(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": jwtSecret, "RELAY_RATE_LIMIT": "0"})
	owner := dialAs(t, n, token(t, "owner", time.Hour, nil))
	owner.SendJSON(joinFrame("private"))
	owner.Expect("join", wstest.IsEvent("join", "owner", "private"))
	owner.SendJSON(chatFrame("private", "secret 1"))
	owner.Expect("chat", wstest.IsChat("secret 1"))

	mallory := wstest.Dial(t, n.WS("token="+url.QueryEscape(token(t, "mallory", time.Hour, map[string]any{"rooms": []string{"open"}})))+"&epoch=x&since="+url.QueryEscape("lobby:0,private:0,open:0"), nil)
	w := mallory.Welcome()
	if !slices.Equal(w.Forbidden, []string{"private"}) {
		t.Fatalf("welcome = %s, want forbidden [private]", w.Raw)
	}
	mallory.Expect("open rejoined", wstest.IsEvent("join", "mallory", "open"))
	owner.SendJSON(chatFrame("private", "secret 2"))
	owner.Expect("chat", wstest.IsChat("secret 2"))
	mallory.SendJSON(map[string]any{"type": "leave", "room": "private"})
	mallory.QuietUntil(wstest.IsError("not_member"), func(f wstest.Frame) bool { return f.Room == "private" && f.Type != "error" })
}

func TestWhoOverWebSocket(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_WHO_LIMIT": "3", "RELAY_RATE_LIMIT": "0"})
	var clients []*wstest.Client
	for _, name := range []string{"dan", "ann", "cat", "ann"} {
		c := wstest.Dial(t, n.WS("name="+name), nil)
		c.Welcome()
		c.SendJSON(joinFrame("ops"))
		c.Expect("join", wstest.IsEvent("join", name, "ops"))
		clients = append(clients, c)
	}
	clients[0].SendJSON(map[string]any{"type": "who", "room": "ops"})
	f := clients[0].Expect("who", wstest.IsWho("ops"))
	if f.Count() != 4 || !slices.Equal(f.Users, []string{"ann", "cat", "dan"}) || f.Truncated {
		t.Fatalf("who = %s", f.Raw)
	}
	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	bob.Welcome()
	bob.SendJSON(map[string]any{"type": "who", "room": "ops"})
	if f := bob.Expect("who from a non-member", wstest.IsError("not_member")); f.Request != "who" || f.Room != "ops" {
		t.Errorf("refused who: %s", f.Raw)
	}
	bob.SendJSON(joinFrame("ops"))
	bob.Expect("join", wstest.IsEvent("join", "bob", "ops"))
	bob.SendJSON(map[string]any{"type": "who", "room": "ops"})
	f = bob.Expect("who past the limit", wstest.IsWho("ops"))
	if f.Count() != 5 || len(f.Users) != 3 || !f.Truncated {
		t.Fatalf("who past RELAY_WHO_LIMIT = %s", f.Raw)
	}
	bob.SendJSON(map[string]any{"type": "who"})
	bob.Expect("who without a room", wstest.IsError("bad_room"))
}

func TestAPIRoomsAndWho(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0"})
	for i, name := range []string{"ann", "bob", "cat"} {
		c := wstest.Dial(t, n.WS("name="+name), nil)
		c.Welcome()
		for _, room := range []string{"a", "b", "c"}[:i+1] {
			c.SendJSON(joinFrame(room))
			c.Expect("join", wstest.IsEvent("join", name, room))
		}
	}
	get := func(path, key string) (int, map[string]any) {
		return request(t, http.MethodGet, n.URL()+path, key, "")
	}
	status, body := get("/api/rooms", "k")
	if status != 200 || fmt.Sprint(body["rooms"]) != "[map[online:3 room:a] map[online:2 room:b] map[online:1 room:c] map[online:3 room:lobby]]" || body["next"] != nil {
		t.Fatalf("GET /api/rooms = %d %v", status, body)
	}
	status, body = get("/api/rooms?limit=2", "k")
	if status != 200 || fmt.Sprint(body["rooms"]) != "[map[online:3 room:a] map[online:2 room:b]]" || body["next"] != "b" {
		t.Fatalf("page 1 = %d %v", status, body)
	}
	status, body = get("/api/rooms?limit=2&after=b", "k")
	if status != 200 || fmt.Sprint(body["rooms"]) != "[map[online:1 room:c] map[online:3 room:lobby]]" {
		t.Fatalf("page 2 = %d %v", status, body)
	}
	status, body = get("/api/rooms/b", "k")
	if status != 200 || body["room"] != "b" || body["online"] != 2.0 || fmt.Sprint(body["users"]) != "[bob cat]" || body["truncated"] != false {
		t.Fatalf("GET /api/rooms/b = %d %v", status, body)
	}
	status, body = get("/api/rooms/empty", "k")
	if status != 200 || body["online"] != 0.0 || fmt.Sprint(body["users"]) != "[]" {
		t.Fatalf("GET /api/rooms/empty = %d %v", status, body)
	}

	for _, tc := range []struct {
		path, key string
		status    int
	}{
		{"/api/rooms", "", 401},
		{"/api/rooms", "wrong", 401},
		{"/api/rooms/a", "", 401},
		{"/api/rooms?limit=0", "k", 400},
		{"/api/rooms?limit=1001", "k", 400},
		{"/api/rooms?limit=x", "k", 400},
		{"/api/rooms?after=", "k", 400},
		{"/api/rooms?after=a%20b", "k", 400},
		{"/api/rooms/a%20b", "k", 400},
		{"/api/rooms/" + strings.Repeat("r", 65), "k", 400},
	} {
		if status, body := get(tc.path, tc.key); status != tc.status || body["error"] == nil {
			t.Errorf("GET %s (key %q) = %d %v, want %d with an error", tc.path, tc.key, status, body, tc.status)
		}
	}
}

// No room, or a page past the last one, is an empty list, not null.
func TestAPIRoomsEmptyIsArray(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k"})
	for _, path := range []string{"/api/rooms", "/api/rooms?after=zzz"} {
		status, raw := testkit.Do(t, http.MethodGet, n.URL()+path, "k", "")
		if got := strings.TrimSpace(string(raw)); status != 200 || got != `{"rooms":[]}` {
			t.Errorf("GET %s on an empty node = %d %s, want 200 {\"rooms\":[]}", path, status, got)
		}
	}
}

func TestAPIDisconnect(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0"})
	a1 := wstest.Dial(t, n.WS("name=alice"), nil)
	a1.Welcome()
	a2 := wstest.Dial(t, n.WS("name=alice"), nil)
	a2.Welcome()
	b := wstest.Dial(t, n.WS("name=bob"), nil)
	b.Welcome()
	post := func(body, key string) (int, map[string]any) {
		return request(t, http.MethodPost, n.URL()+"/api/disconnect", key, body)
	}
	for _, tc := range []struct {
		body, key string
		status    int
	}{
		{`{"user":"alice"}`, "", 401},
		{`{"user":"alice"}`, "nope", 401},
		{``, "k", 400},
		{`{`, "k", 400},
		{`{"reason":"x"}`, "k", 400},
		{`{"user":""}`, "k", 400},
		{`{"user":7}`, "k", 400},
		{`{"user":"alice","reason":7}`, "k", 400},
		{`{"user":"alice","reason":"` + strings.Repeat("x", 124) + `"}`, "k", 400},
		{`{"user":"` + strings.Repeat("u", 257) + `"}`, "k", 400},
		{`{"user":"alice"}{}`, "k", 400},
	} {
		if status, body := post(tc.body, tc.key); status != tc.status || body["error"] == nil {
			t.Errorf("POST %.40q (key %q) = %d %v, want %d with an error", tc.body, tc.key, status, body, tc.status)
		}
	}
	roundTrip(a1) // the refused requests closed nothing

	if status, body := post(`{"user":"alice","reason":"spamming"}`, "k"); status != 200 || body["success"] != true {
		t.Fatalf("disconnect = %d %v", status, body)
	}
	for _, c := range []*wstest.Client{a1, a2} {
		if ce := c.CloseError(); ce.Code != 4000 || ce.Reason != "spamming" {
			t.Fatalf("alice closed with %d %q, want 4000 spamming", ce.Code, ce.Reason)
		}
	}
	b.Expect("bob sees alice leave", wstest.IsEvent("leave", "alice", "lobby"))
	roundTrip(b)
	if status, _ := post(`{"user":"bob"}`, "k"); status != 200 {
		t.Fatal(status)
	}
	if ce := b.CloseError(); ce.Code != websocket.StatusCode(4000) || ce.Reason != "disconnected by the server" {
		t.Fatalf("bob closed with %d %q", ce.Code, ce.Reason)
	}
	// Nobody connected: still 200 (it was published).
	if status, _ := post(`{"user":"nobody"}`, "k"); status != 200 {
		t.Fatal(status)
	}
}

func TestAPIRemove(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0"})
	a := wstest.Dial(t, n.WS("name=alice"), nil)
	a.Welcome()
	b := wstest.Dial(t, n.WS("name=bob"), nil)
	b.Welcome()
	a.SendJSON(joinFrame("ops"))
	a.Expect("alice joins", wstest.IsEvent("join", "alice", "ops"))
	b.SendJSON(joinFrame("ops"))
	a.Expect("bob joins", wstest.IsEvent("join", "bob", "ops"))
	post := func(room, body, key string) (int, map[string]any) {
		return request(t, http.MethodPost, n.URL()+"/api/rooms/"+room+"/remove", key, body)
	}
	for _, tc := range []struct {
		room, body, key string
		status          int
	}{
		{"ops", `{"user":"alice"}`, "", 401},
		{"a%20b", `{"user":"alice"}`, "k", 400},
		{"ops", `{}`, "k", 400},
		{"ops", `not json`, "k", 400},
	} {
		if status, body := post(tc.room, tc.body, tc.key); status != tc.status || body["error"] == nil {
			t.Errorf("remove %s %q (key %q) = %d %v, want %d", tc.room, tc.body, tc.key, status, body, tc.status)
		}
	}
	if status, body := post("ops", `{"user":"alice","reason":"off topic"}`, "k"); status != 200 || body["success"] != true {
		t.Fatalf("remove = %d %v", status, body)
	}
	f := a.Expect("alice's own leave", wstest.IsEvent("leave", "alice", "ops"))
	if f.Reason != "off topic" || f.Count() != 1 {
		t.Fatalf("alice's leave = %s", f.Raw)
	}
	f = b.Expect("bob sees alice leave", wstest.IsEvent("leave", "alice", "ops"))
	if f.Reason != "" {
		t.Fatalf("others' leave carries the reason: %s", f.Raw)
	}
	a.SendJSON(chatFrame("ops", "still here?"))
	a.Expect("no longer a member", wstest.IsError("not_member"))
	roundTrip(a) // still connected, still in lobby
	a.SendJSON(joinFrame("ops"))
	a.Expect("may join again", wstest.IsEvent("join", "alice", "ops"))
}

func TestPrivateRoomsNeverLeak(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": jwtSecret, "RELAY_API_KEY": "k", "RELAY_RATE_LIMIT": "0"})
	wstest.PrivateRooms{
		Nodes: []string{n.WS("")},
		Mint: func(sub string, ttl time.Duration, extra map[string]any) string {
			return token(t, sub, ttl, extra)
		},
		Notify: func(room, text string) {
			if status, body := notify(t, n, fmt.Sprintf(`{"room":%q,"message":%q}`, room, text)); status != 200 {
				t.Fatalf("notify: %d %v", status, body)
			}
		},
		Messages: 20,
	}.Run(t)
}
