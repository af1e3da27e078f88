// Package hub holds a node's local connections, their rooms and users, and
// fans out what the broker delivers. It knows nothing of HTTP or WebSocket
// handshakes: a connection is anything that can queue a frame and be closed.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
)

// Conn is what the hub needs from a client connection.
type Conn interface {
	// Send queues a frame without blocking; false means it was not queued
	// (the connection is closing or too slow, and is being closed).
	Send(frame []byte) bool
	// CloseWith closes politely after what is queued, within grace.
	CloseWith(status uint16, reason string, grace time.Duration)
}

// Broker is what the hub needs from the pub/sub backplane.
type Broker interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	PublishStream(ctx context.Context, topic string, msg []byte) (broker.Position, error)
	History(ctx context.Context, topic string, q broker.HistoryQuery) (broker.History, error)
	Subscribe(ctx context.Context, topic string, h broker.Handler) error
	Unsubscribe(ctx context.Context, topic string) error
}

// Counter counts room members: this node's alone, or the cluster's
// (package presence). A join Add that fails is not counted (the hub refuses
// the join); a leave Add that fails is still recorded by the counter.
// A claim takes a room's coalesced changes for one presence event; Unclaim
// gives them back when that event could not be sent.
// Who and Rooms read what the counts are made of: who is in a room, and
// which rooms have members.
type Counter interface {
	Add(ctx context.Context, room, user string, delta int) (presence.Change, error)
	Claim(ctx context.Context, room string) (presence.Summary, bool, error)
	Unclaim(ctx context.Context, room string, s presence.Summary) error
	Who(ctx context.Context, room string, limit int) (presence.Members, error)
	Rooms(ctx context.Context, after string, limit int) ([]presence.RoomCount, error)
}

// Observer receives delivery counts, for metrics. Methods must not block.
type Observer interface {
	Delivered(n int)
	Dropped(reason string, n int)
}

// StreamObserver receives what streams do, for metrics. Methods must not
// block.
type StreamObserver interface {
	// Resumed counts a resume: recovered is false when a stream it listed
	// could not be filled.
	Resumed(recovered bool)
	// Repaired counts a stream that caught up from history (a gap in
	// what the broker delivered, or a resubscription).
	Repaired()
	// Lost counts positions history no longer had when a stream needed
	// them: what its clients were told of in a gap frame.
	Lost(positions uint64)
	// FannedOut gives the time from a message's publication to its being
	// queued for this node's clients.
	FannedOut(d time.Duration)
}

// Options configure a Hub.
type Options struct {
	Node             string
	PresenceLimit    int           // rooms above this size get coalesced presence events
	PresenceInterval time.Duration // at most one presence event per room per interval
	Logger           *slog.Logger
	Observer         Observer
	Streams          StreamObserver // nil: not observed
	// Counter counts members across the cluster; nil counts this node's.
	Counter Counter
	// MaxFrameBytes bounds the frames a message is sent in: a chat or
	// notification whose encoding would pass it is refused (too_large), so
	// that escaping cannot amplify what a client sends. 0 = no bound.
	MaxFrameBytes int
	// HoldBytes bounds what is held for a client while it is brought up to
	// date (a resume, a join with history); past it the client is closed
	// as too slow. Default 1 MiB.
	HoldBytes int
	// WhoLimit bounds the users in a who answer. Default 1000.
	WhoLimit int
}

// Hub is one node's view of the service. Create it with New, call Start, and
// Close it after the server has stopped.
//
// Lock order. Where locks nest, they are taken in this order, outermost
// first; a lock may be skipped, never taken after one below it:
//
//	subscription.mu  (subs.go: held across a topic's broker calls)
//	the broker's own (the in-process broker delivers under its bus lock)
//	Client.mu        (a client's rooms, joining, removals, gone)
//	stream.mu        (a topic's position; delivery fans out under it)
//	clientsMu        (clients and users)
//	roomsMu, room.mu (the room map, a room's members: never held together;
//	                  roomsMu is let go before a room's mu is taken)
//	Client.holdMu    (frames held for a client; conn.Send, which only queues)
//
// subscriptions.mu and presenceMu are leaves: nothing is taken while they
// are held. No broker or counter call is made under any lock but
// subscription.mu, and no socket is written under any: Conn.Send queues.
type Hub struct {
	opts   Options
	broker Broker
	log    *slog.Logger
	obs    Observer

	idPrefix string
	seq      atomic.Uint64 // message ids
	connSeq  atomic.Uint64 // connection ids, never 0

	roomsMu sync.RWMutex
	rooms   map[string]*room

	clientsMu sync.RWMutex
	clients   map[*Client]struct{}
	users     map[string]*userEntry

	subs    *subscriptions
	counter Counter

	presenceMu      sync.Mutex
	presencePending map[string]struct{} // rooms with coalesced changes to announce

	removals chan removal // for controlLoop (control.go)

	hooks testHooks // set by tests only (export_test.go)

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New returns a hub publishing through b.
func New(opts Options, b Broker) *Hub {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Streams == nil {
		opts.Streams = nopObserver{}
	}
	if opts.PresenceInterval <= 0 {
		opts.PresenceInterval = time.Second
	}
	if opts.HoldBytes <= 0 {
		opts.HoldBytes = 1 << 20
	}
	if opts.WhoLimit <= 0 {
		opts.WhoLimit = 1000
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	h := &Hub{
		opts:     opts,
		broker:   b,
		log:      opts.Logger,
		obs:      opts.Observer,
		idPrefix: hex.EncodeToString(r[:]),
		rooms:    make(map[string]*room),
		clients:  make(map[*Client]struct{}),
		users:    make(map[string]*userEntry),
		stop:     make(chan struct{}),
		removals: make(chan removal, controlQueue),
	}
	h.subs = newSubscriptions(h)
	h.counter = opts.Counter
	if h.counter == nil {
		h.counter = presence.NewLocal(opts.PresenceLimit)
	}
	h.presencePending = make(map[string]struct{})
	return h
}

// Start subscribes to the broadcast topic and starts the presence ticker.
// If the broker is unreachable it keeps trying in the background, so that a
// cluster can start in any order; the node reports unready meanwhile.
func (h *Hub) Start(ctx context.Context) error {
	h.wg.Add(2)
	go h.presenceLoop()
	go h.controlLoop()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second) // a broker that never answers must not hold up startup
	defer cancel()
	if err := h.subs.acquire(sctx, topicAll); err != nil {
		h.log.Warn("broker unavailable; subscribing to broadcasts in the background", "err", err)
		h.wg.Add(1)
		go h.subscribeAllUntilDone()
	}
	return nil
}

// subscribeAllUntilDone retries the broadcast subscription until it succeeds
// or the hub closes.
func (h *Hub) subscribeAllUntilDone() {
	defer h.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := h.subs.acquire(ctx, topicAll)
		cancel()
		if err == nil {
			h.log.Info("subscribed to broadcasts")
			return
		}
	}
}

// Close stops the presence ticker. It does not close clients (see CloseAll).
// Idempotent.
func (h *Hub) Close() {
	h.stopOnce.Do(func() { close(h.stop) })
	h.wg.Wait()
}

// LocalRooms returns how many rooms have members on this node.
func (h *Hub) LocalRooms() int {
	h.roomsMu.RLock()
	defer h.roomsMu.RUnlock()
	return len(h.rooms)
}

// Node returns this node's id.
func (h *Hub) Node() string { return h.opts.Node }

// CloseAll closes every local connection with status and reason after what is
// queued for it, allowing grace for each to finish.
func (h *Hub) CloseAll(status uint16, reason string, grace time.Duration) {
	h.clientsMu.RLock()
	defer h.clientsMu.RUnlock()
	for c := range h.clients {
		c.conn.CloseWith(status, reason, grace)
	}
}

// newID returns a message id unique across nodes: a random per-process
// prefix and a counter.
func (h *Hub) newID() string {
	return h.idPrefix + "-" + strconv.FormatUint(h.seq.Add(1), 36)
}

// testHooks are seams for tests to pause the hub between steps; nil
// (unset) outside tests, and set before the hub is used.
type testHooks struct {
	register func(step string)            // between Register's steps
	removed  func(c *Client, room string) // after controlLoop handled a removal
}

type nopObserver struct{}

func (nopObserver) Delivered(int)           {}
func (nopObserver) Dropped(string, int)     {}
func (nopObserver) Resumed(bool)            {}
func (nopObserver) Repaired()               {}
func (nopObserver) Lost(uint64)             {}
func (nopObserver) FannedOut(time.Duration) {}

// mustEncode encodes the hub's own frames, whose fields are plain strings and
// ints and cannot fail to marshal.
func (h *Hub) mustEncode(v any) protocol.Frame {
	f, err := protocol.Encode(v)
	if err != nil {
		panic(fmt.Sprintf("hub: encoding %T: %v", v, err))
	}
	return f
}

// unavailable logs a broker or counter failure on c's behalf, with its
// cause, and returns what c is told: to try again.
func (h *Hub) unavailable(msg string, c *Client, room string, err error) *protocol.Error {
	h.log.Warn(msg, "user", c.user, "room", room, "err", err)
	return &protocol.Error{Code: protocol.ErrUnavailable, Text: "message broker unavailable, try again"}
}
