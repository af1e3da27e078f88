-- KEYS: nodes. ARGV: node prefix, room (unused), dead node, users prefix,
-- reaped mark prefix.
-- Removes the dead node if nobody has yet, with its users hashes, and marks
-- it reaped for an hour, so that if it was alive after all (slow, not
-- dead) its next renewal learns its members were announced gone; returns
-- its rooms and counts.
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not expiry or tonumber(expiry) >= now then return {} end
redis.call('ZREM', KEYS[1], ARGV[3])
local h = ARGV[1] .. ARGV[3]
local rooms = redis.call('HGETALL', h)
redis.call('DEL', h)
for i = 1, #rooms, 2 do
  redis.call('DEL', ARGV[4] .. ARGV[3] .. '|' .. rooms[i])
end
if #rooms > 0 then redis.call('SET', ARGV[5] .. ARGV[3], '1', 'EX', 3600) end
return rooms
