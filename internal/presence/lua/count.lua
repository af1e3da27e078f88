-- KEYS: nodes. ARGV: node prefix, room.
return total()
