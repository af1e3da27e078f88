-- Reads a stream: its epoch, its latest position and the entries asked for
-- that are younger than the TTL, oldest first.
--
-- KEYS[1] the epoch, KEYS[2] the stream's position counter, KEYS[3] its
-- history, KEYS[4] the floor, KEYS[5] the streams in use (see publish.lua).
-- ARGV[1] entries after this position, ARGV[2] at most this many (0:
-- none), ARGV[3] "1" for the latest entries instead, ARGV[4] the TTL in
-- milliseconds, ARGV[5] a fresh epoch, used if Redis has none, ARGV[6] with
-- "1" in ARGV[3]: the newest position to read (0: the stream's latest),
-- ARGV[7] at most this many bytes of entry data (0: no bound).
--
-- A read uses the stream (creating its counter at the floor): the position
-- it answers is where the stream's next message follows, whatever is
-- forgotten meanwhile.
--
-- The stream is read a few entries at a time and the read stops at the
-- first entry past the byte budget, so that what a read costs Redis (in
-- memory and in time) is bounded by the budget, not by the stream's size.
--
-- Returns {epoch, latest, truncated ("1": the budget left entries out),
-- seq1, data1, seq2, data2, ...}.
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
local out = {epoch, top, '0'}
local limit = tonumber(ARGV[2])
if limit <= 0 then
  return out
end
local batch = 8
local maxBytes = tonumber(ARGV[7])
local oldest = now - tonumber(ARGV[4])
local used, scanned = 0, 0
local taken = {} -- in reading order

-- count is how many entries to read next: up to 8, but no more than the
-- budget left can take at the size of the biggest entry seen so far, plus
-- one to find where it ends, so that a budget nearly spent does not fetch
-- 8 big entries to keep none (the first read takes 1 to learn a size).
local biggest = 0
local function count()
  local n = math.min(batch, limit - scanned)
  if maxBytes > 0 then
    if biggest == 0 then
      return 1
    end
    n = math.min(n, math.floor((maxBytes - used) / biggest) + 1)
  end
  return math.max(n, 1)
end

-- take keeps entry e = {"<seq>-0", {"t", ms, "d", data}} if it fits in the
-- budget, and reports whether it did.
local function take(e)
  local d = e[2][4]
  if maxBytes > 0 and used + #d > maxBytes then
    out[3] = '1'
    return false
  end
  used = used + #d
  taken[#taken + 1] = e
  return true
end

if ARGV[3] == '1' then
  local hi = '+'
  if tonumber(ARGV[6]) > 0 then
    hi = ARGV[6] .. '-0'
  end
  local done = false
  while not done and scanned < limit do
    local n = count()
    local es = redis.call('XREVRANGE', KEYS[3], hi, '-', 'COUNT', n)
    scanned = scanned + #es
    for _, e in ipairs(es) do
      biggest = math.max(biggest, #e[2][4])
      -- Newest first: past the first expired entry, all are expired.
      if tonumber(e[2][2]) <= oldest or not take(e) then
        done = true
        break
      end
    end
    if #es < n then
      break
    end
    hi = '(' .. es[#es][1]
  end
  for i = #taken, 1, -1 do
    out[#out + 1] = string.sub(taken[i][1], 1, -3)
    out[#out + 1] = taken[i][2][4]
  end
  return out
end

local lo = '(' .. ARGV[1] .. '-0'
local done = false
while not done and scanned < limit do
  local n = count()
  local es = redis.call('XRANGE', KEYS[3], lo, '+', 'COUNT', n)
  scanned = scanned + #es
  for _, e in ipairs(es) do
    biggest = math.max(biggest, #e[2][4]) -- expired ones too: they take the reads
    if tonumber(e[2][2]) > oldest and not take(e) then
      done = true
      break
    end
  end
  if #es < n then
    break
  end
  lo = '(' .. es[#es][1]
end
for _, e in ipairs(taken) do
  out[#out + 1] = string.sub(e[1], 1, -3)
  out[#out + 1] = e[2][4]
end
return out
