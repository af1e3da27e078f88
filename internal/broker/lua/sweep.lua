-- Forgets streams unused for a while, so that rooms used once (guests
-- opening fresh rooms) leave no state behind for good, and raises the floor
-- past their positions so that none is given again in this epoch.
--
-- KEYS[1] the floor, KEYS[2] the streams in use (counters by last use).
-- ARGV[1] forget those last used before this (Unix milliseconds),
-- ARGV[2] at most this many per call, ARGV[3] the counters' suffix
-- (":seq"), ARGV[4] the histories' suffix (":hist").
--
-- The counter and history keys are named by the set's members, not
-- declared: like the presence scripts, this needs one Redis server.
--
-- Returns how many streams were forgotten.
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local floor = tonumber(redis.call('GET', KEYS[1]) or '0')
local top = floor
for _, counter in ipairs(old) do
  local hist = string.sub(counter, 1, -1 - #ARGV[3]) .. ARGV[4]
  local seq = tonumber(redis.call('GET', counter) or '0')
  if seq > top then
    top = seq
  end
  redis.call('DEL', counter, hist)
  redis.call('ZREM', KEYS[2], counter)
end
if top > floor then
  redis.call('SET', KEYS[1], top)
end
return #old
