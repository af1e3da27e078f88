package protocol

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Positions is a client's side of streams: the last position it has in
// each, checked as frames arrive, and the query that resumes from them.
// Go clients (relay chat, relay bench, tests) use it; relay.js does the same.
// It is not safe for concurrent use.
type Positions struct {
	Epoch string
	Seq   map[string]uint64
	rooms []string // joined rooms besides lobby, in join order

	Duplicates int // frames at or before the position: dropped
}

// InFrame is what Positions reads from a server frame.
type InFrame struct {
	Type      string   `json:"type"`
	Event     string   `json:"event"`
	Room      string   `json:"room"`
	User      string   `json:"user"`
	Stream    string   `json:"stream"`
	Epoch     string   `json:"epoch"`
	Seq       RawSeq   `json:"seq"`
	Recovered *bool    `json:"recovered"`
	Missed    []string `json:"missed"`
}

// RawSeq is "seq": a number in stream frames, an object in the welcome.
type RawSeq struct {
	N   uint64
	Map map[string]uint64
	Set bool
}

// UnmarshalJSON reads either form.
func (r *RawSeq) UnmarshalJSON(b []byte) error {
	r.Set = true
	if len(b) > 0 && b[0] == '{' {
		r.Map = make(map[string]uint64)
		return jsonUnmarshal(b, &r.Map)
	}
	return jsonUnmarshal(b, &r.N)
}

// StreamOf names the stream of a chat or notification frame, "" for frames
// outside streams.
func StreamOf(f InFrame) string {
	switch {
	case f.Type == TypeMessage:
		return f.Room
	case f.Type == TypeNotification && f.Room != "":
		return f.Room
	case f.Type == TypeNotification && f.User != "":
		return StreamUser
	case f.Type == TypeNotification:
		return StreamAll
	}
	return ""
}

// Observe takes one frame in order of arrival. It reports whether the
// frame is new to the client (false: a duplicate, to drop) and, for a
// stream frame that is not the next of its stream, an error describing the
// gap or reordering.
func (p *Positions) Observe(f InFrame) (fresh bool, err error) {
	if p.Seq == nil {
		p.Seq = make(map[string]uint64)
	}
	switch {
	case f.Type == TypeSystem && f.Event == EventWelcome:
		if f.Recovered == nil || f.Epoch != p.Epoch {
			// A fresh start (or history lost): the welcome says where.
			// Rooms rejoined by a resume get theirs in their joins.
			if f.Recovered == nil {
				p.rooms = nil
			}
			p.Seq = make(map[string]uint64, len(f.Seq.Map))
			for name, at := range f.Seq.Map {
				p.Seq[name] = at
			}
		} else {
			// A resume: filled streams go on from where the client was
			// (the replay follows); missed ones start afresh.
			for name, at := range f.Seq.Map {
				if _, had := p.Seq[name]; !had || slices.Contains(f.Missed, name) {
					p.Seq[name] = at
				}
			}
			for _, name := range f.Missed {
				if slices.Contains(p.rooms, name) {
					delete(p.Seq, name) // its join says where it starts
				}
			}
		}
		p.Epoch = f.Epoch
		return true, nil
	case f.Type == TypeSystem && f.Event == EventJoin && f.Seq.Set:
		if _, had := p.Seq[f.Room]; !had {
			p.Seq[f.Room] = f.Seq.N
		}
		if !slices.Contains(p.rooms, f.Room) && f.Room != Lobby {
			p.rooms = append(p.rooms, f.Room)
		}
		return true, nil
	case f.Type == TypeSystem && f.Event == EventGap:
		p.Epoch = f.Epoch
		p.Seq[f.Stream] = f.Seq.N
		return true, nil
	}
	name := StreamOf(f)
	if name == "" || !f.Seq.Set {
		return true, nil
	}
	last, ok := p.Seq[name]
	switch {
	case !ok:
		return true, fmt.Errorf("stream %s: message %d for a stream the client is not in", name, f.Seq.N)
	case f.Seq.N <= last:
		p.Duplicates++
		return false, nil
	case f.Seq.N != last+1:
		p.Seq[name] = f.Seq.N
		return true, fmt.Errorf("stream %s: message %d after %d: %d missing", name, f.Seq.N, last, f.Seq.N-last-1)
	}
	p.Seq[name] = f.Seq.N
	return true, nil
}

// Leave forgets a room the client left.
func (p *Positions) Leave(room string) {
	delete(p.Seq, room)
	p.rooms = slices.DeleteFunc(p.rooms, func(r string) bool { return r == room })
}

// Query returns the upgrade query that resumes from here:
// epoch=E&since=*:12,@:3,lobby:44,ops:17. Empty before the first welcome.
func (p *Positions) Query() string {
	if p.Epoch == "" {
		return ""
	}
	var pairs []string
	for _, name := range append([]string{StreamAll, StreamUser, Lobby}, p.rooms...) {
		if at, ok := p.Seq[name]; ok {
			pairs = append(pairs, name+":"+strconv.FormatUint(at, 10))
		}
	}
	return "epoch=" + url.QueryEscape(p.Epoch) + "&since=" + url.QueryEscape(strings.Join(pairs, ","))
}
