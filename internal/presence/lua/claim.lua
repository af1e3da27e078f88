-- KEYS: nodes, the room's lock, the room's pending hash.
-- ARGV: node prefix, room, node, interval ms.
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {0, 0, 0, 0} end
local j = tonumber(redis.call('HGET', KEYS[3], 'joined') or '0')
local l = tonumber(redis.call('HGET', KEYS[3], 'left') or '0')
redis.call('DEL', KEYS[3])
return {1, total(), j, l}
