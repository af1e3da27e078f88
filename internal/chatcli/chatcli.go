// Package chatcli is `relay chat`: a small terminal client, like wscat,
// that prints relay's frames readably and sends typed lines. Minimal
// container images have no wscat; this is how users try a cluster.
package chatcli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/relay/relay/internal/protocol"
)

// Help is printed at the start of a session.
const Help = `type a line to chat in the current room; commands:
  /join ROOM   join a room (and send to it)
  /leave ROOM  leave a room
  /room ROOM   send to ROOM from now on
  /who [ROOM]  who is in ROOM (default: the current room), across the cluster
  /ping        ask the server for a pong
  /quit        close the connection
  {...}        send a raw JSON frame`

// Options configure a session.
type Options struct {
	URL   string // ws:// or wss:// URL of /ws
	Token string // JWT, sent as Authorization: Bearer
	Name  string // ?name= when the server has no JWT secret

	// MinDelay and MaxDelay bound the reconnect backoff: the n-th retry
	// waits between half and all of min(MaxDelay, MinDelay * 2^n).
	// Zero: 500 ms and 10 s.
	MinDelay, MaxDelay time.Duration
}

// dialTimeout bounds one connection attempt, handshake included.
const dialTimeout = 10 * time.Second

// Run connects and runs the session until in ends, /quit, ctx ends or the
// server closes the connection for good. A connection that ends with 1001,
// 1011, 1012 or 1013, or that is lost (1006), is resumed: it reconnects
// with backoff and ?epoch&since, and prints how the resume went. Only the
// first connection's failure is returned as an error.
func Run(ctx context.Context, o Options, in io.Reader, out io.Writer) error {
	if o.MinDelay <= 0 {
		o.MinDelay = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 10 * time.Second
	}
	s := &session{o: o, out: out, inLobby: true}
	ws, err := s.dial(ctx)
	if err != nil {
		return err
	}
	s.print("%s", Help)

	lines, done := make(chan string), make(chan struct{})
	defer close(done)
	go func() { // ends with in, or at its next line once Run has returned: a blocked read of a terminal cannot be interrupted
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()

	room := "lobby"
	for attempt := 0; ; {
		readDone := make(chan readEnd, 1)
		go func() { readDone <- s.read(ctx, ws) }() // ends when ws closes; joined below
		end, quit := s.converse(ctx, ws, lines, readDone, &room)
		ws.CloseNow()
		if quit {
			// We closed it: whatever reading ended with (the close
			// handshake's answer, or the socket closed under it) is the end.
			s.print("* closed")
			return nil
		}
		if end.welcomed {
			attempt = 0
		}
		if !retryable(end.err) || ctx.Err() != nil {
			return s.closed(end.err)
		}
		why := describe(end.err)
		for ws = nil; ws == nil; {
			delay := backoff(o.MinDelay, o.MaxDelay, attempt)
			attempt++
			s.print("* %s; reconnecting in %v", why, delay.Round(10*time.Millisecond))
			if s.pause(ctx, delay, lines) {
				return nil
			}
			if ws, err = s.dial(ctx); err != nil {
				var refused *refusal
				if errors.As(err, &refused) || ctx.Err() != nil {
					s.print("* %v", err)
					return err
				}
				why = err.Error()
			}
		}
	}
}

// Frame turns a typed line into the frame to send (nil for none) and the
// room to send to from now on.
func Frame(line, room string) ([]byte, string, error) {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" {
		return nil, room, nil
	}
	if strings.HasPrefix(trimmed, "{") {
		return []byte(trimmed), room, nil
	}
	if cmd, arg, ok := strings.Cut(trimmed, " "); strings.HasPrefix(trimmed, "/") {
		arg = strings.TrimSpace(arg)
		switch {
		case cmd == "/ping":
			return []byte(`{"type":"ping"}`), room, nil
		case cmd == "/who":
			target := room
			if ok && arg != "" {
				target = arg
			}
			b, _ := json.Marshal(map[string]string{"type": "who", "room": target})
			return b, room, nil
		case (cmd == "/join" || cmd == "/leave" || cmd == "/room") && ok && arg != "":
			if cmd == "/room" {
				return nil, arg, nil
			}
			b, _ := json.Marshal(map[string]string{"type": cmd[1:], "room": arg})
			if cmd == "/join" {
				room = arg
			} else if arg == room {
				room = "lobby"
			}
			return b, room, nil
		default:
			return nil, room, fmt.Errorf("unknown command %q (try /join ROOM, /leave ROOM, /room ROOM, /who, /ping, /quit)", trimmed)
		}
	}
	b, _ := json.Marshal(map[string]string{"type": "message", "room": room, "data": line})
	return b, room, nil
}

// Format renders one server frame for a terminal.
func Format(b []byte) string {
	var f struct {
		Type   string          `json:"type"`
		Event  string          `json:"event"`
		User   string          `json:"user"`
		Node   string          `json:"node"`
		Room   string          `json:"room"`
		Online int             `json:"online"`
		Joined int             `json:"joined"`
		Left   int             `json:"left"`
		Data   json.RawMessage `json:"data"`
		Code   string          `json:"code"`
		Error  string          `json:"error"`
		// who, a removal's leave, a resume's refused rooms
		Users     []string `json:"users"`
		Truncated bool     `json:"truncated"`
		Reason    string   `json:"reason"`
		Forbidden []string `json:"forbidden"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return string(b)
	}
	text := string(f.Data)
	var s string
	if json.Unmarshal(f.Data, &s) == nil {
		text = s
	}
	switch {
	case f.Type == "system" && f.Event == "welcome":
		line := fmt.Sprintf("* connected to %s as %s, %d online in %s", f.Node, f.User, f.Online, f.Room)
		if len(f.Forbidden) > 0 {
			line += fmt.Sprintf("; not rejoined (forbidden): %s", strings.Join(f.Forbidden, ", "))
		}
		return line
	case f.Type == "system" && f.Event == "leave" && f.Reason != "":
		return fmt.Sprintf("* %s removed from %s by the server: %s (%d online)", f.User, f.Room, f.Reason, f.Online)
	case f.Type == "who":
		more := ""
		if f.Truncated {
			more = ", …"
		}
		return fmt.Sprintf("* in %s: %d online: %s%s", f.Room, f.Online, strings.Join(f.Users, ", "), more)
	case f.Type == "system" && (f.Event == "join" || f.Event == "leave"):
		verb := map[string]string{"join": "joined", "leave": "left"}[f.Event]
		return fmt.Sprintf("* %s %s %s (%d online)", f.User, verb, f.Room, f.Online)
	case f.Type == "system" && f.Event == "presence":
		return fmt.Sprintf("* %s: %d online (+%d -%d)", f.Room, f.Online, f.Joined, f.Left)
	case f.Type == "message":
		return fmt.Sprintf("[%s] %s: %s", f.Room, f.User, text)
	case f.Type == "notification" && f.Room != "":
		return fmt.Sprintf("[notice %s] %s", f.Room, text)
	case f.Type == "notification":
		return "[notice] " + text
	case f.Type == "error":
		return fmt.Sprintf("! %s: %s", f.Code, f.Error)
	case f.Type == "pong":
		return "* pong"
	case f.Type == "system" && f.Event == "gap":
		var g protocol.Gap
		_ = json.Unmarshal(b, &g)
		return fmt.Sprintf("* gap in %s: messages up to #%d may be missing (history no longer had them)", streamLabel(g.Stream), g.Seq)
	}
	return string(b)
}
