-- KEYS: nodes, this node's hash, the room's pending hash, this node's users
-- hash for the room, the rooms set.
-- ARGV: node prefix, room, node, delta, ttl ms, limit, user.
-- O(1) in the room's size: two HINCRBYs, and a ZADD in the rooms set.
local lost = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then lost = 1 end
local c = redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[4])
if c <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[5]))
local u = redis.call('HINCRBY', KEYS[4], ARGV[7], ARGV[4])
if u <= 0 then redis.call('HDEL', KEYS[4], ARGV[7]) end
redis.call('PEXPIRE', KEYS[4], 2 * tonumber(ARGV[5]))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[3])
local sum = total()
if sum > 0 then redis.call('ZADD', KEYS[5], 0, ARGV[2]) else redis.call('ZREM', KEYS[5], ARGV[2]) end
if sum > tonumber(ARGV[6]) then
  local field = 'left'
  if tonumber(ARGV[4]) > 0 then field = 'joined' end
  redis.call('HINCRBY', KEYS[3], field, 1)
  redis.call('PEXPIRE', KEYS[3], 60000)
  return {sum, 1, lost}
end
return {sum, 0, lost}
