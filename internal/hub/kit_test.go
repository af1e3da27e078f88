package hub_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/relay/relay/internal/broker"
	"github.com/relay/relay/internal/hub"
	"github.com/relay/relay/internal/presence"
	"github.com/relay/relay/internal/protocol"
	"github.com/relay/relay/internal/testkit"
)

// The hub's tests drive it through its API with fakes at its three edges:
// testConn for a client connection (centrifuge's testTransport), the real
// in-process broker wrapped in hookBroker, and presence.Local wrapped in
// hookCounter. The hooks make a broker or counter call fail or block on
// demand, so that a test can put a call in between.

// testConn records what the hub queues for one client, decoded as that
// client would read it.
type testConn struct {
	t *testing.T

	mu     sync.Mutex
	events []event
	refuse bool // Send reports false, as a closing or too slow connection does
	closes []closeCall
}

type closeCall struct {
	status uint16
	reason string
}

// event is any server frame's JSON, as a client decodes it.
type event struct {
	Type   string          `json:"type"`
	Event  string          `json:"event"`
	User   string          `json:"user"`
	Room   string          `json:"room"`
	Node   string          `json:"node"`
	Online int             `json:"online"`
	Joined int             `json:"joined"`
	Left   int             `json:"left"`
	Data   json.RawMessage `json:"data"`
	ID     string          `json:"id"`
	// who, a removal's leave, a resume's welcome
	Users     []string `json:"users"`
	Truncated bool     `json:"truncated"`
	Reason    string   `json:"reason"`
	Forbidden []string `json:"forbidden"`
	Epoch     string   `json:"epoch"`
}

func (c *testConn) Send(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return false
	}
	var e event
	if err := json.Unmarshal(textPayload(c.t, frame), &e); err != nil {
		c.t.Errorf("queued frame is not JSON: %v: %q", err, frame)
	}
	c.events = append(c.events, e)
	return true
}

func (c *testConn) CloseWith(status uint16, reason string, _ time.Duration) {
	c.mu.Lock()
	c.closes = append(c.closes, closeCall{status, reason})
	c.mu.Unlock()
}

func (c *testConn) setRefuse(v bool) {
	c.mu.Lock()
	c.refuse = v
	c.mu.Unlock()
}

// take returns the events queued since the last take.
func (c *testConn) take() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev := c.events
	c.events = nil
	return ev
}

// all returns every event queued since the last take, keeping them.
func (c *testConn) all() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.events...)
}

// textPayload checks that frame is one unmasked WebSocket text frame, as a
// browser would, and returns its payload.
func textPayload(t *testing.T, frame []byte) []byte {
	t.Helper()
	if len(frame) < 2 || frame[0] != 0x81 || frame[1]&0x80 != 0 {
		t.Fatalf("not a final, unmasked text frame: % x", frame[:min(len(frame), 10)])
	}
	n, rest := uint64(frame[1]&0x7f), frame[2:]
	switch n {
	case 126:
		n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
	case 127:
		n, rest = binary.BigEndian.Uint64(rest), rest[8:]
	}
	if uint64(len(rest)) != n {
		t.Fatalf("frame says %d payload bytes, has %d", n, len(rest))
	}
	return rest
}

// membership is what a client sees of a join, leave or presence event.
type membership struct {
	event, user, room string
	online            int
}

func memberships(ev []event) []membership {
	var out []membership
	for _, e := range ev {
		if e.Type == "system" && (e.Event == "join" || e.Event == "leave") {
			out = append(out, membership{e.Event, e.User, e.Room, e.Online})
		}
	}
	return out
}

func presenceEvents(ev []event, room string) []event {
	var out []event
	for _, e := range ev {
		if e.Event == "presence" && e.Room == room {
			out = append(out, e)
		}
	}
	return out
}

func chats(ev []event) []string {
	var out []string
	for _, e := range ev {
		if e.Type == "message" {
			out = append(out, e.User+"@"+e.Room+":"+string(e.Data))
		}
	}
	return out
}

// hookBroker is the in-process broker with hooks called before each
// Subscribe or Publish: an error from the hook fails the call, and a hook
// may block to hold the caller there. It also counts live subscriptions.
type hookBroker struct {
	*broker.Memory

	mu          sync.Mutex
	onSubscribe func(topic string) error
	onPublish   func(topic string) error
	subscribed  map[string]int // Subscribe minus Unsubscribe calls that succeeded
}

func newHookBroker(t *testing.T) *hookBroker {
	m := broker.NewMemory(broker.WithHistory(broker.HistoryOptions{Size: 200, TTL: time.Minute}))
	t.Cleanup(func() { m.Close() })
	return &hookBroker{Memory: m, subscribed: make(map[string]int)}
}

func (b *hookBroker) hooks() (sub, pub func(string) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.onSubscribe, b.onPublish
}

func (b *hookBroker) setHooks(sub, pub func(string) error) {
	b.mu.Lock()
	b.onSubscribe, b.onPublish = sub, pub
	b.mu.Unlock()
}

func (b *hookBroker) Subscribe(ctx context.Context, topic string, h broker.Handler) error {
	if hook, _ := b.hooks(); hook != nil {
		if err := hook(topic); err != nil {
			return err
		}
	}
	if err := b.Memory.Subscribe(ctx, topic, h); err != nil {
		return err
	}
	b.mu.Lock()
	b.subscribed[topic]++
	b.mu.Unlock()
	return nil
}

func (b *hookBroker) Unsubscribe(ctx context.Context, topic string) error {
	if err := b.Memory.Unsubscribe(ctx, topic); err != nil {
		return err
	}
	b.mu.Lock()
	b.subscribed[topic]--
	b.mu.Unlock()
	return nil
}

func (b *hookBroker) Publish(ctx context.Context, topic string, payload []byte) error {
	if _, hook := b.hooks(); hook != nil {
		if err := hook(topic); err != nil {
			return err
		}
	}
	return b.Memory.Publish(ctx, topic, payload)
}

func (b *hookBroker) PublishStream(ctx context.Context, topic string, msg []byte) (broker.Position, error) {
	if _, hook := b.hooks(); hook != nil {
		if err := hook(topic); err != nil {
			return broker.Position{}, err
		}
	}
	return b.Memory.PublishStream(ctx, topic, msg)
}

// subscriptions returns how many times topic is subscribed: 0 or 1 unless
// the hub subscribed twice.
func (b *hookBroker) subscriptions(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subscribed[topic]
}

// hookCounter is presence.Local with a hook called before each Add (an
// error refuses the Add, and the hook may block), and a claim gate: while
// it is shut, Claim loses, as it does when another node holds the claim.
type hookCounter struct {
	*presence.Local

	mu        sync.Mutex
	onAdd     func(room string, delta int) error
	onClaimed func(room string) // called after a claim that won, before it returns
	claimShut bool
}

func (c *hookCounter) setOnAdd(f func(room string, delta int) error) {
	c.mu.Lock()
	c.onAdd = f
	c.mu.Unlock()
}

func (c *hookCounter) setClaimShut(v bool) {
	c.mu.Lock()
	c.claimShut = v
	c.mu.Unlock()
}

func (c *hookCounter) Add(ctx context.Context, room, user string, delta int) (presence.Change, error) {
	c.mu.Lock()
	hook := c.onAdd
	c.mu.Unlock()
	if hook != nil {
		if err := hook(room, delta); err != nil {
			return presence.Change{}, err
		}
	}
	if err := ctx.Err(); err != nil { // as a networked counter would
		return presence.Change{}, err
	}
	return c.Local.Add(ctx, room, user, delta)
}

func (c *hookCounter) Claim(ctx context.Context, room string) (presence.Summary, bool, error) {
	c.mu.Lock()
	shut := c.claimShut
	c.mu.Unlock()
	if shut {
		return presence.Summary{}, false, nil
	}
	s, ok, err := c.Local.Claim(ctx, room)
	c.mu.Lock()
	hook := c.onClaimed
	c.mu.Unlock()
	if hook != nil && ok && err == nil {
		hook(room)
	}
	return s, ok, err
}

func (c *hookCounter) setOnClaimed(f func(room string)) {
	c.mu.Lock()
	c.onClaimed = f
	c.mu.Unlock()
}

// gate holds a hook's caller until opened, and tells the test when a
// caller has arrived.
type gate struct {
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{arrived: make(chan struct{}, 16), open: make(chan struct{})}
	t.Cleanup(g.release) // never leave a caller blocked
	return g
}

func (g *gate) wait() {
	g.arrived <- struct{}{}
	<-g.open
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) waitArrival(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("nobody reached the gate within 5s")
	}
}

// fixture is a started hub on a hookBroker and a hookCounter.
type fixture struct {
	t       *testing.T
	hub     *hub.Hub
	broker  *hookBroker
	counter *hookCounter
	log     *testkit.Buffer
}

func newFixture(t *testing.T, opts hub.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, broker: newHookBroker(t), log: &testkit.Buffer{}}
	if opts.Node == "" {
		opts.Node = "n1"
	}
	if opts.PresenceLimit == 0 {
		opts.PresenceLimit = 100
	}
	if opts.PresenceInterval == 0 {
		opts.PresenceInterval = time.Hour
	}
	f.counter = &hookCounter{Local: presence.NewLocal(opts.PresenceLimit)}
	opts.Counter = f.counter
	opts.Logger = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.hub = hub.New(opts, f.broker)
	if err := f.hub.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.hub.Close)
	return f
}

// register connects user and checks its welcome.
func (f *fixture) register(user string) (*hub.Client, *testConn) {
	f.t.Helper()
	conn := &testConn{t: f.t}
	c, err := f.hub.Register(context.Background(), conn, user, nil, protocol.Resume{})
	if err != nil {
		f.t.Fatalf("Register(%q): %v", user, err)
	}
	if ev := conn.take(); len(ev) == 0 || ev[0].Event != "welcome" || ev[0].User != user {
		f.t.Fatalf("%s's first frames = %+v, want its welcome", user, ev)
	}
	return c, conn
}

func (f *fixture) join(c *hub.Client, room string) {
	f.t.Helper()
	if err := f.hub.Join(context.Background(), c, room, 0); err != nil {
		f.t.Fatalf("%s joins %s: %v", c.User(), room, err)
	}
}

func (f *fixture) leave(c *hub.Client, room string) {
	f.t.Helper()
	if err := f.hub.Leave(context.Background(), c, room); err != nil {
		f.t.Fatalf("%s leaves %s: %v", c.User(), room, err)
	}
}

func (f *fixture) chat(c *hub.Client, room, text string) error {
	data, _ := json.Marshal(text)
	return f.hub.Chat(context.Background(), c, room, data)
}

var errBroker = errors.New("broker down (test)")
