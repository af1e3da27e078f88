-- KEYS: nodes. ARGV: node prefix, room (unused), dead node.
-- Removes the dead node if nobody has yet; returns its rooms and counts.
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not expiry or tonumber(expiry) >= now then return {} end
redis.call('ZREM', KEYS[1], ARGV[3])
local h = ARGV[1] .. ARGV[3]
local rooms = redis.call('HGETALL', h)
redis.call('DEL', h)
return rooms
