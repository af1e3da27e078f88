-- KEYS: nodes, this node's hash, this node's reaped mark.
-- ARGV: node, ttl ms, users prefix, then the rooms this node has members in.
-- Renews the node in one round trip: its hash's and users hashes' TTLs and
-- its life in the nodes set, with Redis's clock. Returns whether its hash
-- was there (0: Redis lost it, or it was reaped) and whether a reaper
-- marked it reaped (1: its members were announced gone).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local kept = redis.call('PEXPIRE', KEYS[2], 2 * ttl)
for i = 4, #ARGV do
  redis.call('PEXPIRE', ARGV[3] .. ARGV[1] .. '|' .. ARGV[i], 2 * ttl)
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
return {kept, redis.call('EXISTS', KEYS[3])}
