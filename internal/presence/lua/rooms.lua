-- KEYS: nodes, rooms. ARGV: node prefix, after ('' from the first), limit.
-- Up to limit rooms with members, in name order after after, as name,
-- count pairs. A listed room found empty (its last node died) is dropped
-- from the set on the way.
local limit = tonumber(ARGV[3])
local out = {}
local start = '-'
if ARGV[2] ~= '' then start = '(' .. ARGV[2] end
while #out < 2 * limit do
  local names = redis.call('ZRANGEBYLEX', KEYS[2], start, '+', 'LIMIT', 0, limit)
  if #names == 0 then break end
  for _, room in ipairs(names) do
    local c = total(room)
    if c > 0 then
      out[#out + 1] = room
      out[#out + 1] = c
      if #out == 2 * limit then break end
    else
      redis.call('ZREM', KEYS[2], room)
    end
  end
  start = '(' .. names[#names]
end
return out
