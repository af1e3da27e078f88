-- Shared by the scripts, which start with it: total() is the room's
-- members over live nodes (total(room) another room's).
-- KEYS[1] is the nodes set; ARGV[1] the node hash prefix, ARGV[2] the room.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function total(room)
  room = room or ARGV[2]
  local sum = 0
  for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
    local v = redis.call('HGET', ARGV[1] .. n, room)
    if v then sum = sum + tonumber(v) end
  end
  return sum
end
