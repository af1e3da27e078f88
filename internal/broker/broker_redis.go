package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Redis is the backplane for a cluster: every node publishes to and
// subscribes on one Redis server, so a message published on any node
// reaches the subscribers on every node.
//
// Redis PUB/SUB delivers at most once: a message published while a node is
// disconnected from Redis is not replayed to it. The node resubscribes to
// everything it needs when Redis returns, and every handler then gets a
// Resubscribed notice, so that it can read what it missed from History.
type Redis struct {
	client  *redis.Client
	prefix  string
	history HistoryOptions
	log     *slog.Logger

	psMu   sync.Mutex
	pubsub *redis.PubSub // replaced when the subscription connection goes silent

	mu       sync.Mutex
	handlers map[string]Handler         // by full channel name
	waiting  map[string][]chan struct{} // Subscribe calls awaiting Redis's confirmation

	healthy atomic.Bool // the subscription connection is up
	closed  atomic.Bool
	stop    context.CancelFunc
	done    chan struct{}
	swept   chan struct{} // closed when the sweeper has ended
}

var _ Broker = (*Redis)(nil)

// RedisOptions configure NewRedis.
type RedisOptions struct {
	URL     string // redis:// or rediss://, with password and db if any
	Prefix  string // of every channel and key; "relay:" by default
	History HistoryOptions
	Logger  *slog.Logger
}

// NewRedis connects to Redis lazily: a node started before Redis is
// reachable keeps retrying in the background instead of failing, and Ready
// reports the outage until it ends.
func NewRedis(opts RedisOptions) (*Redis, error) {
	ropts, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	tune(ropts)
	if opts.Prefix == "" {
		opts.Prefix = "relay:"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	client := redis.NewClient(ropts)
	ctx, stop := context.WithCancel(context.Background())
	r := &Redis{
		client:   client,
		pubsub:   client.Subscribe(ctx), // no channels yet: connects on first use
		prefix:   opts.Prefix,
		history:  opts.History,
		log:      opts.Logger,
		handlers: make(map[string]Handler),
		waiting:  make(map[string][]chan struct{}),
		stop:     stop,
		done:     make(chan struct{}),
		swept:    make(chan struct{}),
	}
	go r.receive(ctx) // joined by Close
	go r.sweep(ctx)   // joined by Close
	return r, nil
}

// tune sets how the client (shared with the presence counter) waits.
//   - A caller's deadline bounds each command, reads included: a slow Redis
//     answers the caller in its own time, not after a fixed read timeout.
//     Read and write timeouts are a backstop for calls without a deadline.
//   - go-redis never retries: a command whose answer timed out may have
//     run, and running a publish script again would publish twice. relay
//     retries itself where that is safe (PublishStream's receipt).
//   - Fail fast during an outage: a dial gives up within a second (go-redis
//     tries it 5 times, 100 ms apart, within the caller's deadline), and a
//     call waits for a free connection at most 3 s. Fewer dial tries (2)
//     left a node started before Redis with a subscription that never
//     came up: TestNodeStartsBeforeRedis. The pool is large, so
//     that slow answers do not queue every other call behind them.
func tune(o *redis.Options) {
	o.ContextTimeoutEnabled = true
	o.ReadTimeout = 10 * time.Second
	o.WriteTimeout = 10 * time.Second
	o.DialTimeout = time.Second
	o.PoolTimeout = 3 * time.Second
	if o.PoolSize == 0 { // not set by the URL's pool_size
		o.PoolSize = 512
	}
	o.MaxRetries = -1
}

// Client returns the underlying Redis client, for the presence counter that
// shares the connection pool.
func (r *Redis) Client() *redis.Client { return r.client }

// Publish sends payload to every node subscribed to topic.
func (r *Redis) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := r.usable(ctx); err != nil {
		return err
	}
	msg := make([]byte, 0, 1+len(payload))
	msg = append(append(msg, 'p'), payload...)
	if err := r.client.Publish(ctx, r.channel(topic), msg).Err(); err != nil {
		return fmt.Errorf("redis publish: %w", err)
	}
	return nil
}

// usable says why a message cannot be published now, if it cannot.
func (r *Redis) usable(ctx context.Context) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// While this node's subscriptions are down (Redis just came back and
	// they are being restored), a message it publishes would not reach its
	// own clients: refuse it rather than lose it silently.
	if !r.awaitHealthy(ctx) {
		return errors.New("redis publish: this node's subscription connection is down")
	}
	return nil
}

// ps is the current subscription connection.
func (r *Redis) ps() *redis.PubSub {
	r.psMu.Lock()
	defer r.psMu.Unlock()
	return r.pubsub
}

// Subscribe sets the handler for topic and returns once Redis has confirmed
// the subscription, so that anything published after it returns arrives.
// During an outage it fails and leaves nothing subscribed. Subscriptions
// made before an outage are restored when Redis returns.
func (r *Redis) Subscribe(ctx context.Context, topic string, h Handler) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ch := r.channel(topic)
	confirmed := make(chan struct{})
	r.mu.Lock()
	r.handlers[ch] = h
	r.waiting[ch] = append(r.waiting[ch], confirmed)
	r.mu.Unlock()

	err := r.ps().Subscribe(ctx, ch)
	if err == nil {
		select {
		case <-confirmed:
			return nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// Not subscribed: undo, or go-redis would resubscribe it on reconnect
	// behind the caller's back.
	r.forgetWaiter(ch, confirmed)
	r.mu.Lock()
	delete(r.handlers, ch)
	r.mu.Unlock()
	_ = r.ps().Unsubscribe(context.WithoutCancel(ctx), ch)
	return fmt.Errorf("redis subscribe %s: %w", ch, err)
}

func (r *Redis) forgetWaiter(ch string, w chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.waiting[ch]
	for i, x := range ws {
		if x == w {
			r.waiting[ch] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(r.waiting[ch]) == 0 {
		delete(r.waiting, ch)
	}
}

// unsubscribeTimeout bounds telling Redis of an unsubscription. It is the
// broker's own, not the caller's: a goodbye whose deadline has passed
// still lets go of its topics.
const unsubscribeTimeout = time.Second

// Unsubscribe stops delivery for topic at once, whatever ctx: the handler
// is dropped, and so is the channel from what a reconnection subscribes
// to. Redis is then told, within unsubscribeTimeout; if it cannot be (an
// outage), the error says so and the subscription lingers at Redis only
// until the connection is renewed, its messages dropped on arrival.
func (r *Redis) Unsubscribe(ctx context.Context, topic string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	ch := r.channel(topic)
	r.mu.Lock()
	delete(r.handlers, ch)
	r.mu.Unlock()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unsubscribeTimeout)
	defer cancel()
	// go-redis forgets the channel before it writes the command, so a
	// failed write cannot bring it back on its reconnection either.
	if err := r.ps().Unsubscribe(uctx, ch); err != nil {
		return fmt.Errorf("redis unsubscribe %s (dropped here, Redis not told): %w", ch, err)
	}
	return nil
}

// Subscriptions returns how many topics the node is subscribed to: what it
// subscribes to again after an outage.
func (r *Redis) Subscriptions() int {
	if r.closed.Load() {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.handlers)
}

// Ready reports whether Redis answers and the subscription connection is up.
func (r *Redis) Ready(ctx context.Context) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if !r.awaitHealthy(ctx) {
		return errors.New("redis: subscription connection is down")
	}
	return nil
}

// awaitHealthy reports whether the subscription connection is up. If it
// has not reported in yet (just started, or reconnecting) it is asked, and
// given half a second.
func (r *Redis) awaitHealthy(ctx context.Context) bool {
	if r.healthy.Load() {
		return true
	}
	_ = r.ps().Ping(ctx)
	wait, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	for !r.healthy.Load() {
		select {
		case <-wait.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// Close stops delivery and closes the connections. Idempotent.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.stop()
	err := r.ps().Close() // ends the receive loop's wait
	<-r.done
	<-r.swept
	if cerr := r.client.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, redis.ErrClosed) {
		err = nil
	}
	return err
}

// healthCheck is how long the receive loop waits before pinging Redis to
// find out whether a quiet subscription connection is still alive; one that
// has said nothing, not even a pong, for silentAfter is taken for dead (a
// peer gone without a FIN, a blackholed link) and replaced.
const (
	healthCheck = 3 * time.Second
	silentAfter = 2 * healthCheck
)

// receive is the broker's one delivery goroutine: it hands each message to
// its topic's handler, in the order Redis sent them, and reconnects (which
// resubscribes every channel) after an error or a silence.
func (r *Redis) receive(ctx context.Context) {
	defer close(r.done)
	ps := r.ps()
	_ = ps.Ping(ctx) // connect now, and report healthy when it answers
	heard := time.Now()
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthCheck)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(heard) < silentAfter {
					// Quiet, not necessarily dead: a ping's answer (or
					// its failure) comes back through Receive.
					_ = ps.Ping(ctx)
					continue
				}
				if r.healthy.Swap(false) {
					r.log.Warn("redis subscription silent; reconnecting", "silent", time.Since(heard).Round(time.Second))
				}
				ps = r.renewPubSub(ctx)
				heard = time.Now()
				continue
			}
			if r.healthy.Swap(false) {
				r.log.Warn("redis subscription lost; retrying", "err", err)
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		heard = time.Now()
		backoff = 50 * time.Millisecond
		if !r.healthy.Swap(true) {
			r.log.Info("redis subscription up")
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.dispatch(m)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				r.confirmed(m.Channel)
			}
		}
	}
}

// dispatch hands a message to its topic's handler. One for a channel with
// no handler (a stray: unsubscribed here, Redis not told yet) is dropped.
func (r *Redis) dispatch(m *redis.Message) {
	r.mu.Lock()
	h := r.handlers[m.Channel]
	r.mu.Unlock()
	if h == nil || len(m.Payload) == 0 {
		return
	}
	var msg Message
	switch m.Payload[0] {
	case 'p':
		// The payload is never modified (see Handler), so the string's
		// bytes are handed over without a copy.
		msg.Payload = stringBytes(m.Payload[1:])
	case 's':
		var ok bool
		if msg, ok = parseStreamMessage(m.Payload); !ok {
			r.log.Error("dropping malformed stream message", "channel", m.Channel)
			return
		}
	default:
		r.log.Error("dropping message of unknown kind", "channel", m.Channel)
		return
	}
	h(r.topicOf(m.Channel), msg)
}

// confirmed handles Redis's confirmation of a subscription: a Subscribe
// call waiting for it returns; with none waiting, it is a resubscription
// after an outage, and the topic's handler is told.
func (r *Redis) confirmed(ch string) {
	r.mu.Lock()
	ws := r.waiting[ch]
	delete(r.waiting, ch)
	h := r.handlers[ch]
	r.mu.Unlock()
	for _, w := range ws {
		close(w)
	}
	if len(ws) == 0 && h != nil {
		h(r.topicOf(ch), Message{Resubscribed: true})
	}
}

// renewPubSub replaces the subscription connection with a new one
// subscribed to every channel that has a handler.
func (r *Redis) renewPubSub(ctx context.Context) *redis.PubSub {
	r.mu.Lock()
	channels := make([]string, 0, len(r.handlers))
	for ch := range r.handlers {
		channels = append(channels, ch)
	}
	r.mu.Unlock()
	ps := r.client.Subscribe(ctx, channels...)
	r.psMu.Lock()
	if r.closed.Load() { // Close has closed the current one: keep it
		r.psMu.Unlock()
		_ = ps.Close()
		return r.ps()
	}
	old := r.pubsub
	r.pubsub = ps
	r.psMu.Unlock()
	_ = old.Close()
	r.reconcile(ctx, ps, channels)
	_ = ps.Ping(ctx)
	return ps
}

// reconcile brings ps, just subscribed to channels, in line with the
// handlers: a Subscribe or Unsubscribe that ran between the snapshot and
// the swap went to the old connection. (Each deletes or adds its handler
// before it picks the connection, so whatever the swap left out is seen
// here.)
func (r *Redis) reconcile(ctx context.Context, ps *redis.PubSub, subscribed []string) {
	had := make(map[string]struct{}, len(subscribed))
	for _, ch := range subscribed {
		had[ch] = struct{}{}
	}
	var gone, added []string
	r.mu.Lock()
	for _, ch := range subscribed {
		if _, ok := r.handlers[ch]; !ok {
			gone = append(gone, ch)
		}
	}
	for ch := range r.handlers {
		if _, ok := had[ch]; !ok {
			added = append(added, ch)
		}
	}
	r.mu.Unlock()
	if len(gone) > 0 {
		_ = ps.Unsubscribe(ctx, gone...)
	}
	if len(added) > 0 {
		_ = ps.Subscribe(ctx, added...)
	}
}

func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
