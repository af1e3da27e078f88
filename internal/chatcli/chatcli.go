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
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// Help is printed at the start of a session.
const Help = `type a line to chat in the current room; commands:
  /join ROOM   join a room (and send to it)
  /leave ROOM  leave a room
  /room ROOM   send to ROOM from now on
  /ping        ask the server for a pong
  /quit        close the connection
  {...}        send a raw JSON frame`

// Options configure a session.
type Options struct {
	URL   string // ws:// or wss:// URL of /ws
	Token string // JWT, sent as Authorization: Bearer
	Name  string // ?name= when the server has no JWT secret
}

// Run connects and runs the session until in ends, /quit, ctx ends or the
// server closes the connection.
func Run(ctx context.Context, o Options, in io.Reader, out io.Writer) error {
	url := o.URL
	if o.Name != "" {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + "name=" + o.Name
	}
	var opts websocket.DialOptions
	if o.Token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + o.Token}}
	}
	ws, resp, err := websocket.Dial(ctx, url, &opts)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("connect: HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)

	var mu sync.Mutex // one writer to out at a time
	print := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	print("%s", Help)

	readDone := make(chan error, 1)
	go func() { // ends when the connection closes; joined below
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				readDone <- err
				return
			}
			print("%s", Format(b))
		}
	}()

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
	for {
		select {
		case err := <-readDone:
			return closed(err, print)
		case <-ctx.Done():
			ws.Close(websocket.StatusNormalClosure, "bye")
			return closed(<-readDone, print)
		case line, ok := <-lines:
			if !ok || strings.TrimSpace(line) == "/quit" {
				ws.Close(websocket.StatusNormalClosure, "bye")
				return closed(<-readDone, print)
			}
			frame, next, err := Frame(line, room)
			if err != nil {
				print("! %v", err)
				continue
			}
			room = next
			if frame == nil {
				continue
			}
			if err := ws.Write(ctx, websocket.MessageText, frame); err != nil {
				return closed(<-readDone, print)
			}
		}
	}
}

func closed(err error, print func(string, ...any)) error {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure:
		print("* closed")
		return nil
	case errors.As(err, &ce):
		print("* closed by the server: %d %s", ce.Code, ce.Reason)
		return nil
	default:
		print("* connection lost: %v", err)
		return err
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
			return nil, room, fmt.Errorf("unknown command %q (try /join ROOM, /leave ROOM, /room ROOM, /ping, /quit)", trimmed)
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
		return fmt.Sprintf("* connected to %s as %s, %d online in %s", f.Node, f.User, f.Online, f.Room)
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
	}
	return string(b)
}
