"""The Lua scripts of the Redis store: each is one atomic step on one room's keys (Redis runs scripts one at a time).

Every script takes only keys of one room (one hash tag, so one cluster slot) and answers ``-404`` for a room
that does not exist; the store turns that into ``NotFound``. They live apart from the Python that calls
them so each can be read as the one transaction it is.
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPEND", "CREATE", "RAISE", "READ", "TRIM"]

APPEND: Final = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {-404} end
local prev = redis.call('HGET', KEYS[3], ARGV[1])
if prev then
  local seq, ts, digest = string.match(prev, '^(%d+):(%d+):(.*)$')
  if digest ~= ARGV[2] then return {-409} end
  return {tonumber(seq), tonumber(ts), 1}
end
local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
local frame = ARGV[3] .. seq .. ARGV[4]
redis.call('XADD', KEYS[2], seq .. '-0', 'd', frame)
redis.call('HSET', KEYS[3], ARGV[1], seq .. ':' .. ARGV[5] .. ':' .. ARGV[2])
local keep = tonumber(ARGV[9])
if keep > 0 and seq > keep then
  redis.call('XTRIM', KEYS[2], 'MINID', (seq - keep + 1) .. '-0')
  redis.call('HSET', KEYS[1], 'first', seq - keep + 1)
end
if ARGV[7] == '1' then
  if ARGV[8] == '1' then redis.call('SPUBLISH', ARGV[6], frame) else redis.call('PUBLISH', ARGV[6], frame) end
end
return {seq, tonumber(ARGV[5]), 0}
"""

READ: Final = """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'head', 'first')
if not m[1] then return {-404} end
local items = {}
if ARGV[3] == 'asc' then
  items = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
elseif ARGV[1] ~= '0' then  -- before=0: nothing is older (and Redis refuses the exclusive end "(0-0")
  items = redis.call('XREVRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '-', 'COUNT', ARGV[2])
end
local out = {m[1], m[2], m[3]}
for i = 1, #items do out[#out + 1] = items[i][2][2] end
return out
"""

CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'head', 0, 'first', 1, 'owner', ARGV[2], 'created_ms', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if #ARGV > 3 then redis.call('HSET', KEYS[3], unpack(ARGV, 4)) end
return 1
"""

TRIM: Final = """
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if not head then return -404 end
local first = head - tonumber(ARGV[1]) + 1
if first < 1 then first = 1 end
local old = tonumber(redis.call('HGET', KEYS[1], 'first'))
if first <= old then return 0 end
redis.call('XTRIM', KEYS[2], 'MINID', first .. '-0')
redis.call('HSET', KEYS[1], 'first', first)
return first - old
"""

RAISE: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
if seq > current then
  redis.call('HSET', KEYS[1], ARGV[1], seq)
  return seq
end
return current
"""
"""Raise a read position (a hash field) to ARGV[2], never lower it; return the position."""
