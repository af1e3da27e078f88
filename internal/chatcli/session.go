package chatcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/relay/relay/internal/protocol"
)

// session is one `relay chat`: its connections one after another, and what
// carries over from one to the next.
type session struct {
	o     Options
	outMu sync.Mutex
	out   io.Writer

	mu      sync.Mutex // guards what follows: the reader and the typist share it
	pos     protocol.Positions
	inLobby bool              // false once the user left lobby: a resume puts us back, so leave again
	listed  []string          // rooms the current connection's resume lists
	last    map[string]uint64 // room → N of a join sent with "last": N, until it is confirmed
	rec     *recovery         // the resume in progress, until its replay is complete
}

func (s *session) print(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, format+"\n", args...)
}

// refusal is a handshake the server answered with a 4xx: not retried.
type refusal struct {
	status int
	body   string
}

func (r *refusal) Error() string { return fmt.Sprintf("connect: HTTP %d %s", r.status, r.body) }

// dial connects, resuming from the positions the session has.
func (s *session) dial(ctx context.Context) (*websocket.Conn, error) {
	u := s.o.URL
	var params []string
	if s.o.Name != "" {
		params = append(params, "name="+url.QueryEscape(s.o.Name))
	}
	s.mu.Lock()
	q := s.pos.Query()
	s.listed = listedRooms(q)
	s.mu.Unlock()
	if q != "" {
		params = append(params, q)
	}
	if len(params) > 0 {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + strings.Join(params, "&")
	}
	var opts websocket.DialOptions
	if s.o.Token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + s.o.Token}}
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u, &opts)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode >= 400 && resp.StatusCode < 500 {
				return nil, &refusal{resp.StatusCode, strings.TrimSpace(string(body))}
			}
			return nil, fmt.Errorf("connect: HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	ws.SetReadLimit(-1)
	return ws, nil
}

// listedRooms returns the rooms besides lobby that a resume query lists.
func listedRooms(query string) []string {
	v, _ := url.ParseQuery(query)
	var rooms []string
	for _, pair := range strings.Split(v.Get("since"), ",") {
		i := strings.LastIndexByte(pair, ':')
		if name := pair[:max(i, 0)]; i > 0 && name != protocol.StreamAll && name != protocol.StreamUser && name != protocol.Lobby {
			rooms = append(rooms, name)
		}
	}
	return rooms
}

// readEnd is why a connection's reading stopped, and whether it got as
// far as the welcome.
type readEnd struct {
	err      error
	welcomed bool
}

// read prints the connection's frames until it closes.
func (s *session) read(ctx context.Context, ws *websocket.Conn) readEnd {
	var end readEnd
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			end.err = err
			return end
		}
		show, welcome, notes := s.observe(b)
		if welcome {
			end.welcomed = true
		}
		if show {
			s.print("%s", Format(b))
		}
		for _, n := range notes {
			s.print("%s", n)
		}
		if welcome && !s.stayInLobby() {
			// Every connection starts in lobby; the user had left it.
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"leave","room":"lobby"}`))
		}
	}
}

func (s *session) stayInLobby() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inLobby {
		s.pos.Leave(protocol.Lobby)
	}
	return s.inLobby
}

// recovery follows a resume's replay: the missed messages, which the node
// sends after the welcome and the own joins of the listed rooms, before
// anything live.
type recovery struct {
	heads    map[string]uint64 // stream → the last position the replay goes to
	awaiting map[string]bool   // listed rooms whose own join has not come yet
	missed   []string
	count    int
}

// observe takes one frame: whether to show it (a duplicate is not), whether
// it is the welcome, and lines to print after it.
func (s *session) observe(b []byte) (show, welcome bool, notes []string) {
	var f protocol.InFrame
	if json.Unmarshal(b, &f) != nil {
		return true, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	welcome = f.Type == protocol.TypeSystem && f.Event == protocol.EventWelcome
	name := protocol.StreamOf(f)
	if _, tracked := s.pos.Seq[name]; name != "" && !tracked && !welcome {
		return true, false, nil // a room just left, or one we never had a place in
	}
	fresh, err := s.pos.Observe(f)
	if !fresh {
		return false, false, nil
	}
	if err != nil {
		notes = append(notes, "! "+err.Error())
	}
	switch {
	case welcome:
		s.rec = nil
		if f.Recovered != nil {
			r := &recovery{heads: make(map[string]uint64), awaiting: make(map[string]bool), missed: f.Missed}
			for name, at := range f.Seq.Map {
				if s.pos.Seq[name] < at {
					r.heads[name] = at
				}
			}
			for _, room := range s.listed {
				r.awaiting[room] = true
			}
			s.rec = r
		}
	case f.Type == protocol.TypeSystem && f.Event == protocol.EventJoin && f.Seq.Set && s.last[f.Room] > 0:
		// The room's last messages follow the join: not duplicates.
		s.pos.Seq[f.Room] = f.Seq.N - min(f.Seq.N, s.last[f.Room])
		delete(s.last, f.Room)
	case s.rec != nil && f.Type == protocol.TypeSystem && f.Event == protocol.EventJoin && f.Seq.Set && s.rec.awaiting[f.Room]:
		delete(s.rec.awaiting, f.Room)
		if s.pos.Seq[f.Room] < f.Seq.N {
			s.rec.heads[f.Room] = f.Seq.N
		}
	case s.rec != nil && name != "":
		if head, ok := s.rec.heads[name]; ok && f.Seq.N <= head {
			s.rec.count++
			if f.Seq.N == head {
				delete(s.rec.heads, name)
			}
		}
	}
	if r := s.rec; r != nil && len(r.awaiting) == 0 && len(r.heads) == 0 {
		notes = append(notes, r.summary())
		s.rec = nil
	}
	return true, welcome, notes
}

func (r *recovery) summary() string {
	text := fmt.Sprintf("* resumed: %d missed message%s recovered", r.count, plural(r.count))
	if len(r.missed) > 0 {
		names := make([]string, len(r.missed))
		for i, m := range r.missed {
			names[i] = streamLabel(m)
		}
		text += "; gap in " + strings.Join(names, ", ") + ": messages sent there while away are lost"
	}
	return text
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// streamLabel names a stream for people.
func streamLabel(stream string) string {
	switch stream {
	case protocol.StreamAll:
		return "broadcasts"
	case protocol.StreamUser:
		return "your notifications"
	}
	return stream
}

// converse sends typed lines until the connection ends (quit false: the
// reader's end) or the user or ctx ends the session (quit true).
func (s *session) converse(ctx context.Context, ws *websocket.Conn, lines <-chan string, readDone <-chan readEnd, room *string) (end readEnd, quit bool) {
	for {
		select {
		case end := <-readDone:
			return end, false
		case <-ctx.Done():
			ws.Close(websocket.StatusNormalClosure, "bye")
			return <-readDone, true
		case line, ok := <-lines:
			if !ok || strings.TrimSpace(line) == "/quit" {
				ws.Close(websocket.StatusNormalClosure, "bye")
				return <-readDone, true
			}
			frame, next, err := Frame(line, *room)
			if err != nil {
				s.print("! %v", err)
				continue
			}
			*room = next
			if frame == nil {
				continue
			}
			s.sent(frame)
			wctx, cancel := context.WithTimeout(ctx, dialTimeout)
			err = ws.Write(wctx, websocket.MessageText, frame)
			cancel()
			if err != nil {
				ws.CloseNow()
				return <-readDone, false
			}
		}
	}
}

// sent notes a join or leave the user sends: a room left is no longer
// resumed, lobby is left again after each reconnect, and the messages a
// join's "last" asks for are not taken for duplicates.
func (s *session) sent(frame []byte) {
	var f struct {
		Type, Room string
		Last       uint64
	}
	if json.Unmarshal(frame, &f) != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case f.Type == protocol.TypeLeave:
		s.pos.Leave(f.Room)
		if f.Room == protocol.Lobby {
			s.inLobby = false
		}
	case f.Type == protocol.TypeJoin:
		if f.Room == protocol.Lobby {
			s.inLobby = true
		}
		if f.Last > 0 {
			if s.last == nil {
				s.last = make(map[string]uint64)
			}
			s.last[f.Room] = f.Last
		}
	}
}

// pause waits d between connections; typed lines are not sent, /quit and
// the end of input end the session (true).
func (s *session) pause(ctx context.Context, d time.Duration, lines <-chan string) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return false
		case <-ctx.Done():
			s.print("* closed")
			return true
		case line, ok := <-lines:
			if !ok || strings.TrimSpace(line) == "/quit" {
				s.print("* closed")
				return true
			}
			s.print("! not connected: %q was not sent", line)
		}
	}
}

// retryable reports whether a connection that ended with err is resumed.
func retryable(err error) bool {
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		return true // lost: 1006
	}
	switch ce.Code {
	case websocket.StatusGoingAway, websocket.StatusInternalError, websocket.StatusServiceRestart, websocket.StatusTryAgainLater:
		return true
	}
	return false
}

func describe(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("closed by the server: %d %s", ce.Code, ce.Reason)
	}
	return fmt.Sprintf("connection lost: %v", err)
}

// backoff is the n-th retry's delay: between half and all of
// min(maxDelay, minDelay * 2^n).
func backoff(minDelay, maxDelay time.Duration, n int) time.Duration {
	ceiling := maxDelay
	if n < 30 && minDelay<<n < maxDelay {
		ceiling = minDelay << n
	}
	return ceiling/2 + rand.N(ceiling/2+1)
}

func (s *session) closed(err error) error {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure:
		s.print("* closed")
		return nil
	case errors.As(err, &ce):
		s.print("* closed by the server: %d %s", ce.Code, ce.Reason)
		return nil
	default:
		s.print("* connection lost: %v", err)
		return err
	}
}
