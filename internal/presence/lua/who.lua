-- KEYS: nodes. ARGV: node prefix, room, users prefix, limit.
-- The room's count and up to limit distinct users over live nodes. Each
-- node's users hash is scanned only until limit+1 distinct users are seen,
-- so a call costs O(limit), not O(room size).
local limit = tonumber(ARGV[4])
local seen, users, n, truncated = {}, {}, 0, 0
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local key = ARGV[3] .. node .. '|' .. ARGV[2]
  local cursor = '0'
  repeat
    local r = redis.call('HSCAN', key, cursor, 'COUNT', 500)
    cursor = r[1]
    local kv = r[2]
    for i = 1, #kv, 2 do
      local u = kv[i]
      if not seen[u] then
        if n == limit then truncated = 1 break end
        seen[u] = true
        n = n + 1
        users[n] = u
      end
    end
  until cursor == '0' or truncated == 1
  if truncated == 1 then break end
end
return {total(), truncated, users}
