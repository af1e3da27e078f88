-- KEYS: the room's lock, the room's pending hash.
-- ARGV: node, joined, left.
-- Adds a claim's changes back (the pending hash lives 60 s, as add.lua
-- keeps it) and releases the lock if this node holds it.
if tonumber(ARGV[2]) ~= 0 then redis.call('HINCRBY', KEYS[2], 'joined', ARGV[2]) end
if tonumber(ARGV[3]) ~= 0 then redis.call('HINCRBY', KEYS[2], 'left', ARGV[3]) end
redis.call('PEXPIRE', KEYS[2], 60000)
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
