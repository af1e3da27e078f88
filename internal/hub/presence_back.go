package hub

import (
	"context"
	"time"

	"github.com/relay/relay/internal/presence"
)

// PresenceBack announces that this node's members of room are counted
// again after the cluster took the node for dead while it was alive (slow
// renewals): the other nodes announced them gone, so their return is
// announced too, as a presence event with joined (see
// presence.RedisOptions.NodeBack).
func (h *Hub) PresenceBack(room string, s presence.Summary) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.publishPresence(ctx, room, s)
}
