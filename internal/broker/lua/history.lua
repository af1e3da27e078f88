-- Reads a stream: its epoch, its latest position and the entries asked for
-- that are younger than the TTL, oldest first.
--
-- KEYS[1] the epoch, KEYS[2] the stream's position counter, KEYS[3] its
-- history, KEYS[4] the floor, KEYS[5] the streams in use (see publish.lua).
-- ARGV[1] entries after this position, ARGV[2] at most this many (0:
-- none), ARGV[3] "1" for the latest entries instead, ARGV[4] the TTL in
-- milliseconds, ARGV[5] a fresh epoch, used if Redis has none.
--
-- A read uses the stream (creating its counter at the floor): the position
-- it answers is where the stream's next message follows, whatever is
-- forgotten meanwhile.
--
-- Returns {epoch, latest, seq1, data1, seq2, data2, ...}.
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[4], KEYS[5])
end
local top = redis.call('GET', KEYS[2])
if not top then
  top = redis.call('GET', KEYS[4]) or '0'
  redis.call('SET', KEYS[2], top)
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[5], now, KEYS[2])
local out = {epoch, top}
local limit = tonumber(ARGV[2])
if limit <= 0 then
  return out
end
local entries
if ARGV[3] == '1' then
  local rev = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', limit)
  entries = {}
  for i = #rev, 1, -1 do
    entries[#entries + 1] = rev[i]
  end
else
  entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-0', '+', 'COUNT', limit)
end
local oldest = now - tonumber(ARGV[4])
for _, e in ipairs(entries) do
  -- e = {"<seq>-0", {"t", ms, "d", data}}
  if tonumber(e[2][2]) > oldest then
    out[#out + 1] = string.sub(e[1], 1, -3)
    out[#out + 1] = e[2][4]
  end
end
return out
