package presence

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/relay/relay/internal/testkit"
)

// whoCounter is what Local and Redis answer about who is in a room.
type whoCounter interface {
	Add(ctx context.Context, room, user string, delta int) (Change, error)
	Who(ctx context.Context, room string, limit int) (Members, error)
	Rooms(ctx context.Context, after string, limit int) ([]RoomCount, error)
}

func add(t *testing.T, c whoCounter, room, user string, delta int) {
	t.Helper()
	if _, err := c.Add(context.Background(), room, user, delta); err != nil {
		t.Fatalf("Add(%q, %q, %+d): %v", room, user, delta, err)
	}
}

func whoIs(c whoCounter, room string, limit int, want Members) func() error {
	return func() error {
		got, err := c.Who(context.Background(), room, limit)
		if err != nil {
			return err
		}
		if got.Online != want.Online || got.Truncated != want.Truncated || !slices.Equal(got.Users, want.Users) {
			return fmt.Errorf("Who(%q, %d) = %+v, want %+v", room, limit, got, want)
		}
		return nil
	}
}

func roomsAre(c whoCounter, after string, limit int, want ...RoomCount) func() error {
	return func() error {
		got, err := c.Rooms(context.Background(), after, limit)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("Rooms(%q, %d) = %+v, want %+v", after, limit, got, want)
		}
		return nil
	}
}

func check(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

// whoContract: the same answers from one node counting alone and from
// several nodes counting in Redis (the members spread over nodes).
func whoContract(t *testing.T, nodes []whoCounter) {
	at := func(i int) whoCounter { return nodes[i%len(nodes)] }
	check(t, whoIs(at(0), "r", 10, Members{Users: []string{}}))
	add(t, at(0), "r", "carol", +1)
	add(t, at(1), "r", "alice", +1)
	add(t, at(2), "r", "alice", +1) // a second connection of alice
	add(t, at(1), "r", "bob", +1)
	add(t, at(0), "s", "bob", +1)
	check(t, whoIs(at(0), "r", 10, Members{Online: 4, Users: []string{"alice", "bob", "carol"}}))
	// Truncated: a subset of the users, sorted.
	got, err := at(1).Who(context.Background(), "r", 2)
	if err != nil || got.Online != 4 || !got.Truncated || len(got.Users) != 2 || !slices.IsSorted(got.Users) {
		t.Fatalf("Who(r, 2) = %+v, %v", got, err)
	}
	check(t, whoIs(at(1), "r", 3, Members{Online: 4, Users: []string{"alice", "bob", "carol"}}))

	add(t, at(1), "r", "alice", -1) // alice is still there on another connection
	check(t, whoIs(at(2), "r", 10, Members{Online: 3, Users: []string{"alice", "bob", "carol"}}))
	add(t, at(2), "r", "alice", -1)
	check(t, whoIs(at(2), "r", 10, Members{Online: 2, Users: []string{"bob", "carol"}}))

	check(t, roomsAre(at(0), "", 10, RoomCount{"r", 2}, RoomCount{"s", 1}))
	check(t, roomsAre(at(1), "", 1, RoomCount{"r", 2}))
	check(t, roomsAre(at(1), "r", 1, RoomCount{"s", 1}))
	check(t, roomsAre(at(1), "s", 1))
	add(t, at(0), "s", "bob", -1)
	check(t, roomsAre(at(2), "", 10, RoomCount{"r", 2}))
}

func TestLocalWho(t *testing.T) {
	t.Parallel()
	l := NewLocal(100)
	whoContract(t, []whoCounter{l})
}

func TestRedisWho(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: 10 * time.Second}
	var nodes []whoCounter
	for _, name := range []string{"a", "b", "c"} {
		n := c.node(name, opts)
		run(t, n)
		nodes = append(nodes, n)
	}
	whoContract(t, nodes)
}

// A node that dies drops out of who and of the room list after its TTL;
// its users hashes are deleted by the node that reaps it. A Redis that
// restarts empty gets every node's users back at its next renew.
func TestRedisWhoDeadNodeAndRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const ttl = time.Second
	opts := RedisOptions{Limit: 100, Interval: time.Second, TTL: ttl}
	a := c.node("a", opts)
	x := c.node("x", opts) // never renews: dies after its TTL
	run(t, a)
	add(t, a, "r", "alice", +1)
	add(t, x, "r", "xavier", +1)
	add(t, x, "only-x", "xavier", +1)
	check(t, whoIs(a, "r", 10, Members{Online: 2, Users: []string{"alice", "xavier"}}))

	testkit.CheckFor(t, 3*ttl, 20*time.Millisecond, whoIs(a, "r", 10, Members{Online: 1, Users: []string{"alice"}}))
	testkit.CheckFor(t, 3*ttl, 20*time.Millisecond, roomsAre(a, "", 10, RoomCount{"r", 1}))
	testkit.CheckFor(t, 3*ttl, 20*time.Millisecond, func() error {
		n, err := a.client.Exists(context.Background(), x.usersKey("x", "r"), x.usersKey("x", "only-x")).Result()
		if err != nil || n != 0 {
			return fmt.Errorf("x's users hashes: %d exist, %v", n, err)
		}
		return nil
	})

	c.srv.Kill()
	c.srv.Restart()
	testkit.CheckFor(t, 3*time.Second, 20*time.Millisecond, whoIs(a, "r", 10, Members{Online: 1, Users: []string{"alice"}}))
	testkit.CheckFor(t, time.Second, 20*time.Millisecond, roomsAre(a, "", 10, RoomCount{"r", 1}))
}

// The cost of who: a 10,000-member room spread over three nodes, asked for
// the default limit of 1000 users (go test -run XXX -bench Who
// ./internal/presence).
func BenchmarkRedisWho10k(b *testing.B) {
	c := newCluster(b)
	var nodes []*Redis
	for _, name := range []string{"a", "b", "c"} {
		// Live for the whole run without Run renewing them.
		nodes = append(nodes, c.node(name, RedisOptions{Limit: 100, Interval: time.Second, TTL: time.Hour}))
	}
	ctx := context.Background()
	for i := range 10000 {
		if _, err := nodes[i%3].Add(ctx, "big", fmt.Sprintf("user-%05d", i), +1); err != nil {
			b.Fatal(err)
		}
	}
	for _, limit := range []int{1000, 100} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			for b.Loop() {
				m, err := nodes[0].Who(ctx, "big", limit)
				if err != nil || m.Online != 10000 || len(m.Users) != limit || !m.Truncated {
					b.Fatalf("Who = online %d, %d users, truncated %v, %v", m.Online, len(m.Users), m.Truncated, err)
				}
			}
		})
	}
	// A join and a leave cost the same in the big room as in a small one.
	for _, room := range []string{"big", "small"} {
		b.Run("join+leave/"+room, func(b *testing.B) {
			for b.Loop() {
				if _, err := nodes[1].Add(ctx, room, "extra", +1); err != nil {
					b.Fatal(err)
				}
				if _, err := nodes[1].Add(ctx, room, "extra", -1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
