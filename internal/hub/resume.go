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
func (h *Hub) replay(ctx context.Context, user string, from protocol.Resume, epoch string, at map[string]uint64) (frames []protocol.Frame, missed []string) {
	if from.Since == nil {
		return nil, nil
	}
	budget := h.opts.HoldBytes / 2 // the rest is for what arrives meanwhile
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
		es, err := h.entries(ctx, streamTopic(name, user), since, end, epoch)
		size := 0
		for _, e := range es {
			size += len(e.Data) + 10
		}
		if err != nil || uint64(len(es)) != end-since || size > budget {
			missed = append(missed, name)
			continue
		}
		budget -= size
		for _, e := range es {
			frames = append(frames, protocol.FrameJSON(e.Data))
		}
	}
	h.opts.Streams.Resumed(len(missed) == 0)
	return frames, missed
}

// entries reads topic's history after since up to and including end, in
// epoch; what is returned starts at since+1 unless history lost it.
func (h *Hub) entries(ctx context.Context, topic string, since, end uint64, epoch string) ([]broker.Entry, error) {
	hist, err := h.broker.History(ctx, topic, broker.HistoryQuery{Since: since, Limit: int(end - since)})
	if err != nil {
		h.log.Warn("history unavailable for a replay", "stream", topic, "err", err)
		return nil, err
	}
	if hist.Epoch != epoch {
		return nil, nil
	}
	es := hist.Entries
	for len(es) > 0 && es[len(es)-1].Seq > end {
		es = es[:len(es)-1]
	}
	if len(es) > 0 && es[0].Seq != since+1 {
		return nil, nil // the oldest are gone
	}
	return es, nil
}

// latest returns room's messages up to position at, at most n, oldest first:
// what a client asked for with {"type":"join","last":n}.
func (h *Hub) latest(ctx context.Context, room string, at uint64, n int) []protocol.Frame {
	since := uint64(0)
	if at > uint64(n) {
		since = at - uint64(n)
	}
	hist, err := h.broker.History(ctx, roomTopic(room), broker.HistoryQuery{Since: since, Limit: n})
	if err != nil {
		h.log.Warn("history unavailable for a join", "room", room, "err", err)
		return nil
	}
	var frames []protocol.Frame
	for _, e := range hist.Entries {
		if e.Seq <= at {
			frames = append(frames, protocol.FrameJSON(e.Data))
		}
	}
	return frames
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
