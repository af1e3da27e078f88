package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/protocol"
)

// Resume: a client that reconnects says, per stream, the last position it
// has; Register replays what came after it, up to where the client's live
// messages start, from the broker's history. A stream the history cannot
// fill completely is reported missed and nothing of it is replayed: the
// client then starts that stream afresh from the welcome's or join's seq.

// maxReplay bounds how many messages one stream replays.
const maxReplay = 1000

// streamTopic is the topic of a stream as a client names it.
func streamTopic(name, user string) string {
	switch name {
	case protocol.StreamAll:
		return topicAll
	case protocol.StreamUser:
		return userTopic(user)
	default:
		return roomTopic(name)
	}
}

// resumeOrder is from's streams in a fixed order: broadcast, user, lobby,
// then the rooms as listed.
func resumeOrder(from protocol.Resume) []string {
	names := make([]string, 0, len(from.Since))
	for _, n := range []string{protocol.StreamAll, protocol.StreamUser, protocol.Lobby} {
		if _, ok := from.Since[n]; ok {
			names = append(names, n)
		}
	}
	return append(names, from.Rooms...)
}

// awaitPositions gives this node's streams a moment to reach the positions
// a resuming client already has (it saw them on another node a moment ago,
// and they are on their way here), so that none reaches it twice.
func (h *Hub) awaitPositions(ctx context.Context, user string, from protocol.Resume) {
	if from.Since == nil {
		return
	}
	deadline := time.Now().Add(time.Second)
	for _, name := range resumeOrder(from) {
		s := h.subs.stream(streamTopic(name, user))
		if s == nil {
			continue
		}
		for {
			s.mu.Lock()
			behind := s.epoch == from.Epoch && s.last < from.Since[name]
			s.mu.Unlock()
			if !behind || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// replay reads, for each stream from lists, what came after the client's
// position up to at (where its live messages start). It returns the frames
// to queue and the streams it could not fill.
//
// What it reads is bounded in bytes, whatever the streams hold: the frames
// it queues to half the client's hold budget (the rest is for what arrives
// meanwhile), and what it reads in all, kept or not, to the whole budget.
// Each stream's read asks the broker for no more than is left, so a gap too
// big for it costs at most what is left, and is missed like any gap history
// cannot fill. Streams are filled in resumeOrder while the budget lasts.
func (h *Hub) replay(ctx context.Context, user string, from protocol.Resume, epoch string, at map[string]uint64) (frames []protocol.Frame, missed []string) {
	if from.Since == nil {
		return nil, nil
	}
	send := h.opts.HoldBytes / 2
	read := h.opts.HoldBytes
	for _, name := range resumeOrder(from) {
		since := from.Since[name]
		end, ok := at[name]
		switch {
		case !ok || from.Epoch != epoch:
			missed = append(missed, name)
			continue
		case since >= end:
			continue // nothing missed
		case end-since > maxReplay:
			missed = append(missed, name)
			continue
		}
		n := int(end - since)
		budget := min(send, read) - n*protocol.FrameOverhead
		if budget <= 0 {
			missed = append(missed, name)
			continue
		}
		es, size, err := h.entries(ctx, streamTopic(name, user), since, end, epoch, budget)
		read -= size
		if err != nil || len(es) != n {
			missed = append(missed, name)
			continue
		}
		send -= size + n*protocol.FrameOverhead
		for _, e := range es {
			frames = append(frames, protocol.FrameJSON(e.Data))
		}
	}
	h.opts.Streams.Resumed(len(missed) == 0)
	return frames, missed
}

// entries reads topic's history after since up to and including end, in
// epoch, at most maxBytes of it; it returns the entries (from since+1, or
// none if history lost some or they do not fit) and the bytes read.
func (h *Hub) entries(ctx context.Context, topic string, since, end uint64, epoch string, maxBytes int) ([]broker.Entry, int, error) {
	hist, err := h.broker.History(ctx, topic, broker.HistoryQuery{Since: since, Limit: int(end - since), MaxBytes: maxBytes})
	if err != nil {
		h.log.Warn("history unavailable for a replay", "stream", topic, "err", err)
		return nil, 0, err
	}
	size := 0
	for _, e := range hist.Entries {
		size += len(e.Data)
	}
	if hist.Epoch != epoch || hist.Truncated {
		return nil, size, nil
	}
	es := hist.Entries
	for len(es) > 0 && es[len(es)-1].Seq > end {
		es = es[:len(es)-1]
	}
	if len(es) > 0 && es[0].Seq != since+1 {
		return nil, size, nil // the oldest are gone
	}
	return es, size, nil
}

// joinWithLast returns what a client that joined room with
// {"type":"join","last":n} gets: its own join, at position at with online
// members, then the room's last messages up to at.
func (h *Hub) joinWithLast(ctx context.Context, user, room string, online int, at uint64, n int) []protocol.Frame {
	replay, truncated := h.latest(ctx, room, at, n)
	own := ownJoin(user, room, online, at)
	own.Truncated = truncated
	return append([]protocol.Frame{h.mustEncode(own)}, replay...)
}

// latest returns room's messages up to position at, at most n, oldest
// first, and no more than fit in half the client's hold budget (as a
// resume's replay): the newest that fit, truncated when some were left out.
func (h *Hub) latest(ctx context.Context, room string, at uint64, n int) (frames []protocol.Frame, truncated bool) {
	if at == 0 {
		return nil, false // nothing was ever sent to room
	}
	budget := max(1, h.opts.HoldBytes/2-n*protocol.FrameOverhead)
	hist, err := h.broker.History(ctx, roomTopic(room), broker.HistoryQuery{Latest: true, Until: at, Limit: n, MaxBytes: budget})
	if err != nil {
		h.log.Warn("history unavailable for a join", "room", room, "err", err)
		return nil, false
	}
	for _, e := range hist.Entries {
		if e.Seq <= at {
			frames = append(frames, protocol.FrameJSON(e.Data))
		}
	}
	return frames, hist.Truncated
}

// History reads the stream of a target (a room's, a user's, or with both
// empty the broadcast stream) after since, at most limit entries: what a
// backend asks through GET /api/history.
func (h *Hub) History(ctx context.Context, of Target, since uint64, limit int) (broker.History, error) {
	hist, err := h.broker.History(ctx, of.topic(), broker.HistoryQuery{Since: since, Limit: limit})
	if err != nil {
		return broker.History{}, fmt.Errorf("read history of %s: %w", of.topic(), err)
	}
	return hist, nil
}
