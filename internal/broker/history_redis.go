package broker

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Every key and channel of a stream carries the stream's topic as a hash
// tag ("relay:{room:ops}:seq"), so that Redis Cluster would keep a stream on
// one shard. The epoch, the floor and the set of streams in use are one key
// each for the whole Redis: with Cluster they would move into partitions.
var (
	//go:embed lua/publish.lua
	publishLua    string
	publishScript = redis.NewScript(publishLua)

	//go:embed lua/history.lua
	historyLua    string
	historyScript = redis.NewScript(historyLua)

	//go:embed lua/sweep.lua
	sweepLua    string
	sweepScript = redis.NewScript(sweepLua)
)

const (
	seqSuffix  = ":seq"
	histSuffix = ":hist"
	sweepBatch = 500 // streams forgotten per script call: a short script
)

func (r *Redis) channel(topic string) string { return r.prefix + "{" + topic + "}" }

// topicOf is channel's inverse, for what Redis delivers.
func (r *Redis) topicOf(channel string) string {
	return channel[len(r.prefix)+1 : len(channel)-1]
}

func (r *Redis) streamKeys(topic string) []string {
	tag := r.channel(topic)
	return []string{r.prefix + "epoch", tag + seqSuffix, tag + histSuffix, r.prefix + "floor", r.prefix + "streams"}
}

// newEpoch returns an epoch no Redis has used: when Redis has lost its data
// the history before it is gone, and the new epoch says so.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// A publish is tried at most publishAttempts times: again only after an
// attempt that may have run (its answer was lost), which the receipt makes
// safe, and only while the caller's deadline leaves retryRoom.
const (
	publishAttempts = 3
	retryRoom       = 50 * time.Millisecond
	// receiptTTL is how long Redis keeps a publish's receipt: far longer
	// than an attempt of it can wait in Redis (a few seconds at most), so
	// that a late first run and its retry still find each other.
	receiptTTL = time.Minute
)

// PublishStream appends msg to topic's stream in Redis and publishes it, in
// one script. An attempt whose answer is lost is tried again with the same
// receipt, so the message is published at most once; if no attempt could
// tell, the error wraps ErrUnconfirmed.
func (r *Redis) PublishStream(ctx context.Context, topic string, msg []byte) (Position, error) {
	if err := r.usable(ctx); err != nil {
		return Position{}, err
	}
	prefix, err := seqPrefix(msg)
	if err != nil {
		return Position{}, err
	}
	size := 0
	if r.history.keeps() {
		size = r.history.Size
	}
	// The receipt is this call's own (the caller gives no id): it is what
	// its attempts share, and shares the stream's hash tag.
	keys := append(r.streamKeys(topic), r.channel(topic)+":pub:"+newEpoch())
	var unsure error // the last attempt that may have run
	for attempt := 1; ; attempt++ {
		var res []any
		res, err = publishScript.Run(ctx, r.client, keys, r.channel(topic), prefix, size,
			r.history.TTL.Milliseconds(), newEpoch(), receiptTTL.Milliseconds()).Slice()
		if err == nil {
			return parsePosition(res)
		}
		if !mayHaveRun(err) {
			break // certain, and go-redis has retried the dial already
		}
		unsure = err
		if attempt == publishAttempts || !roomForRetry(ctx) {
			break
		}
	}
	if unsure != nil {
		return Position{}, fmt.Errorf("redis publish to stream: %w: %w", ErrUnconfirmed, unsure)
	}
	return Position{}, fmt.Errorf("redis publish to stream: %w", err)
}

func parsePosition(res []any) (Position, error) {
	if len(res) != 2 {
		return Position{}, fmt.Errorf("redis publish to stream: unexpected reply %v", res)
	}
	epoch, _ := res[0].(string)
	seq, _ := res[1].(int64)
	return Position{Epoch: epoch, Seq: uint64(seq)}, nil
}

// roomForRetry reports whether ctx leaves time for another attempt.
func roomForRetry(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) >= retryRoom
}

// mayHaveRun reports whether a command that failed with err may have run
// in Redis: false only when it certainly did not reach it. Anything
// unknown counts as may have run, so that "not sent" is never said of a
// message that was.
func mayHaveRun(err error) bool {
	var rerr redis.Error
	var op *net.OpError
	onSocket := errors.As(err, &op)
	switch {
	case errors.As(err, &rerr):
		// Redis answered with an error: the script stopped before its
		// PUBLISH (a failing script publishes nothing) or never ran.
		return false
	case onSocket && op.Op == "dial":
		return false // no connection, so nothing written
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted), errors.Is(err, redis.ErrClosed):
		return false // no connection to write on
	case !onSocket && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
		// go-redis returns the context's own error only while waiting for
		// a connection; once the command is written, a deadline ends the
		// read on the socket (a *net.OpError timeout).
		return false
	}
	return true // a timeout or a broken connection after the write, or unknown
}

// History reads topic's stream from Redis.
func (r *Redis) History(ctx context.Context, topic string, q HistoryQuery) (History, error) {
	if r.closed.Load() {
		return History{}, ErrClosed
	}
	limit := q.Limit
	if !r.history.keeps() {
		limit = 0
	}
	latest := "0"
	if q.Latest {
		latest = "1"
	}
	res, err := historyScript.Run(ctx, r.client, r.streamKeys(topic),
		q.Since, limit, latest, r.history.TTL.Milliseconds(), newEpoch(), q.Until, max(0, q.MaxBytes)).StringSlice()
	if err != nil {
		return History{}, fmt.Errorf("redis history: %w", err)
	}
	return parseHistory(res)
}

// parseHistory reads history.lua's reply: epoch, position, truncated,
// then seq and data of each entry.
func parseHistory(res []string) (History, error) {
	const head = 3
	if len(res) < head || (len(res)-head)%2 != 0 {
		return History{}, errors.New("redis history: malformed reply")
	}
	top, err := strconv.ParseUint(res[1], 10, 64)
	if err != nil {
		return History{}, fmt.Errorf("redis history: position %q: %w", res[1], err)
	}
	h := History{Position: Position{Epoch: res[0], Seq: top}, Truncated: res[2] == "1"}
	if n := (len(res) - head) / 2; n > 0 {
		h.Entries = make([]Entry, n)
	}
	for i := range h.Entries {
		id, data := res[head+2*i], res[head+2*i+1]
		seq, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return History{}, fmt.Errorf("redis history: entry id %q: %w", id, err)
		}
		h.Entries[i] = Entry{Seq: seq, Data: stringBytes(data)} // no copy: Data is read-only
	}
	return h, nil
}

// Stream messages travel as "s<epoch> <seq> <data>", plain ones as
// "p<payload>".
func parseStreamMessage(p string) (Message, bool) {
	epoch, rest, ok := strings.Cut(p[1:], " ")
	if !ok {
		return Message{}, false
	}
	pos, data, ok := strings.Cut(rest, " ")
	if !ok {
		return Message{}, false
	}
	seq, err := strconv.ParseUint(pos, 10, 64)
	if err != nil {
		return Message{}, false
	}
	return Message{Epoch: epoch, Seq: seq, Payload: stringBytes(data)}, true
}

var _ StateCounter = (*Redis)(nil)

// StateKeys is the number of streams Redis holds a counter for.
func (r *Redis) StateKeys(ctx context.Context) (int64, error) {
	n, err := r.client.ZCard(ctx, r.prefix+"streams").Result()
	if err != nil {
		return 0, fmt.Errorf("redis streams in use: %w", err)
	}
	return n, nil
}

// sweep forgets, every so often, the streams unused for StreamTTL (see
// sweep.lua). Every node sweeps: the script is atomic, so two at once only
// share the work. It ends with ctx (Close).
func (r *Redis) sweep(ctx context.Context) {
	defer close(r.swept)
	ttl := r.history.streamTTL()
	t := time.NewTicker(max(min(ttl/4, time.Minute), 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			cutoff := time.Now().Add(-ttl).UnixMilli()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n, err := sweepScript.Run(sctx, r.client, []string{r.prefix + "floor", r.prefix + "streams"},
				cutoff, sweepBatch, seqSuffix, histSuffix).Int()
			cancel()
			if err != nil {
				if ctx.Err() == nil && r.healthy.Load() {
					r.log.Warn("forgetting unused streams", "err", err)
				}
				break
			}
			if n < sweepBatch {
				break
			}
		}
	}
}
