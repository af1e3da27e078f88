-- Appends a message to its stream and publishes it, in one step, so that
-- every subscriber sees the stream's messages in position order and a
-- message that was published is in the history.
--
-- KEYS[1] the epoch, KEYS[2] the stream's position counter, KEYS[3] its
-- history (a Redis Stream whose entry ids are the positions), KEYS[4] the
-- floor, KEYS[5] the streams in use (a sorted set of counters by last use),
-- KEYS[6] this publish's receipt.
-- ARGV[1] the channel, ARGV[2] the message up to its "seq" field,
-- ARGV[3] how many entries to keep, ARGV[4] for how many milliseconds,
-- ARGV[5] a fresh epoch, used if Redis has none (it lost its data),
-- ARGV[6] how many milliseconds the receipt is kept.
--
-- The receipt makes a retry safe: a caller that lost the answer (a timeout,
-- a broken connection) runs the script again with the same receipt, and
-- gets the first run's position instead of a second copy of the message.
--
-- A counter unused for long is forgotten by sweep.lua, which raises the
-- floor to it; a counter created starts at the floor, so no position is
-- ever given twice in an epoch.
--
-- Published: "s<epoch> <seq> <message with seq>". Returns {epoch, seq}.
local receipt = redis.call('GET', KEYS[6])
if receipt then
  local sp = string.find(receipt, ' ', 1, true)
  return {string.sub(receipt, 1, sp - 1), tonumber(string.sub(receipt, sp + 1))}
end
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[4], KEYS[5])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], redis.call('GET', KEYS[4]) or '0')
end
local seq = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[5], now, KEYS[2])
local data = ARGV[2] .. '"seq":' .. seq .. '}'
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', size, seq .. '-0', 't', now, 'd', data)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PUBLISH', ARGV[1], 's' .. epoch .. ' ' .. seq .. ' ' .. data)
redis.call('SET', KEYS[6], epoch .. ' ' .. seq, 'PX', ARGV[6])
return {epoch, seq}
