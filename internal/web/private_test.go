package web_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relay/relay/internal/auth"
	"github.com/relay/relay/internal/node/nodetest"
	"github.com/relay/relay/internal/wstest"
)

// relay.js and the demo with private rooms, who and the server API.

// who(room) is a promise of the room's users; a refused who rejects it with
// the server's code; a refused join reaches on('error') and drops the room.
func TestClientWhoAndForbidden(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_GUEST_ROOMS": "ops, public-*"})
	p := openPage(t, "page", n.URL()+"/demo?name=ivy")
	p.waitState("live")
	bob := wstest.Dial(t, n.WS("name=bob"), nil)
	bob.Welcome()
	bob.SendJSON(map[string]any{"type": "join", "room": "ops"})
	bob.Expect("join", wstest.IsEvent("join", "bob", "ops"))

	p.eval(`window.solo = {errors: []};
		solo.relay = new Relay('/ws', {name: 'solo'});
		solo.relay.on('error', (e) => solo.errors.push([e.code, e.request, e.room].join(' ')));
		solo.relay.on('welcome', () => solo.relay.join('ops'));
		solo.relay.on('join', (j) => {
			if (j.user !== 'solo' || j.room !== 'ops') return;
			solo.relay.who('ops').then((w) => { solo.who = w; });
			solo.relay.who('elsewhere').catch((e) => { solo.refused = e.code; });
			solo.relay.join('staff');
		});
		true`, nil)
	p.waitFor("who's answer and refusals", `solo.who && solo.refused && solo.errors.includes('forbidden join staff')`)
	var got string
	p.eval(`JSON.stringify([solo.who, solo.refused, [...solo.relay.rooms].sort()])`, &got)
	if got != `[{"room":"ops","online":2,"users":["bob","solo"],"truncated":false},"not_member",["lobby","ops"]]` {
		t.Fatalf("who, refused who, rooms after a forbidden join = %s", got)
	}
	p.eval(`solo.relay.close(); solo.relay.who('ops').catch((e) => { solo.offline = e.code; }); true`, nil)
	p.waitFor("who when closed", `solo.offline === 'offline'`)

	// The page: the forbidden join shows as an error line; the member list
	// shows who is in the room chosen for sending.
	p.typeInto("join-room", "staff")
	p.click("#join-form button")
	p.waitLine("error", "error forbidden: you may not join room staff")
	p.join("ops")
	p.waitFor("ops chosen and its members listed",
		`document.getElementById('members-room').textContent === 'ops' &&
		 [...document.querySelectorAll('#members li')].map(li => li.dataset.user).join(',') === 'bob,ivy'`)
	carol := wstest.Dial(t, n.WS("name=carol"), nil)
	carol.Welcome()
	carol.SendJSON(map[string]any{"type": "join", "room": "ops"})
	carol.Expect("join", wstest.IsEvent("join", "carol", "ops"))
	p.waitFor("carol listed after her join",
		`[...document.querySelectorAll('#members li')].map(li => li.dataset.user).join(',') === 'bob,carol,ivy'`)
	p.click("#who-refresh")
	p.waitFor("the refresh answered", `document.getElementById('members-summary').dataset.online === '3'`)
}

// After POST /api/disconnect the page is closed with the API's code and
// reason, and relay.js does not reconnect.
func TestClientStaysClosedAfterAPIDisconnect(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, map[string]string{"RELAY_API_KEY": "k"})
	p := openPage(t, "page", n.URL()+"/demo?name=jack")
	p.waitState("live")
	p.eval(`window.states = []; relay.on('state', (s) => states.push(s)); true`, nil)
	if status, body := post(t, n, "/api/disconnect", "k", `{"user":"jack","reason":"account suspended"}`); status != 200 {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	p.waitState("closed")
	if s := p.text("state"); s != "closed: 4000 account suspended" {
		t.Fatalf("state shows %q", s)
	}
	var final string
	p.eval(`JSON.stringify([states, relay._closed, relay._timer])`, &final)
	if final != `[["closed"],true,null]` {
		t.Fatalf("states after the disconnect, closed for good, no retry timer: %s", final)
	}
}

// A room joined with a room token: the resume after a restart cannot carry
// the token, the node names the room in the welcome's forbidden, and
// relay.js joins it again with its token.
func TestClientRejoinsRoomTokenRoomsAfterResume(t *testing.T) {
	t.Parallel()
	const secret = "browser-private-secret"
	n := nodetest.Start(t, map[string]string{"RELAY_JWT_SECRET": secret})
	conn, err := auth.MintWith(secret, "kim", time.Hour, map[string]any{"rooms": []string{}})
	if err != nil {
		t.Fatal(err)
	}
	roomToken, err := auth.MintWith(secret, "kim", time.Hour, map[string]any{"room": "vip"})
	if err != nil {
		t.Fatal(err)
	}
	p := openPage(t, "kim", n.URL()+"/demo?token="+conn)
	p.waitState("live")
	p.eval(fmt.Sprintf(`window.vip = {joins: 0, errors: [], live: []};
		relay.on('join', (j) => { if (j.user === 'kim' && j.room === 'vip') vip.joins++; });
		relay.on('error', (e) => vip.errors.push(e.code));
		relay.on('state', (s, info) => { if (s === 'live') vip.live.push(info); });
		relay.join('vip', {token: %q});
		relay.join('ops');
		true`, roomToken), nil)
	p.waitFor("vip joined, ops refused", `vip.joins === 1 && vip.errors.includes('forbidden') && !relay.rooms.has('ops')`)

	n.Stop()
	p.waitState("reconnecting")
	n.Restart()
	p.waitState("live")
	p.waitFor("vip joined again with its token", `vip.joins === 2 && relay.rooms.has('vip')`)
	var info string
	p.eval(`JSON.stringify(vip.live[vip.live.length - 1])`, &info)
	if !strings.Contains(info, `"vip"`) {
		t.Errorf("the resume's live state %s does not report vip missed", info)
	}
	other, err := auth.MintWith(secret, "lee", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := wstest.Dial(t, n.WS("token="+other), nil)
	c.Welcome()
	c.SendJSON(map[string]any{"type": "join", "room": "vip"})
	c.Expect("join", wstest.IsEvent("join", "lee", "vip"))
	c.SendJSON(map[string]any{"type": "message", "room": "vip", "data": "welcome back"})
	p.waitMessage("vip", "lee", "welcome back")
}
