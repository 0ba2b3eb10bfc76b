"""The Lua scripts of the Redis store: each is one atomic step on one room's or one lease's keys (Redis runs
scripts one at a time).

Every script takes only keys of one room or of one lease (one hash tag, so one cluster slot); the room scripts
answer ``-404`` for a room that does not exist, which the store turns into ``NotFound``. They live apart from
the Python that calls them so each can be read as the one transaction it is.
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPEND", "CREATE", "ERASE", "LEASE", "RAISE", "READ", "RELEASE", "TRIM"]

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
local head, first, bound, limit = tonumber(m[2]), tonumber(m[3]), tonumber(ARGV[1]), tonumber(ARGV[2])
local lo, hi
if ARGV[3] == 'asc' then
  lo = math.max(bound + 1, first)
  hi = math.min(head, lo + limit - 1)
else
  hi = math.min(bound - 1, head)
  lo = math.max(first, hi - limit + 1)
end
local out = {m[1], m[2], m[3]}
if hi < lo then return out end
local items = redis.call('XRANGE', KEYS[2], string.format('%d-0', lo), string.format('%d-0', hi))
if #items == hi - lo + 1 then
  for i = 1, #items do out[#out + 1] = items[i][2][2] end
  return out
end
local at = 1
for seq = lo, hi do  -- holes are erased messages: their tombstones fill them
  local item = items[at]
  if item and tonumber(string.match(item[1], '^(%d+)')) == seq then
    out[#out + 1] = item[2][2]
    at = at + 1
  else
    local tombstone = redis.call('HGET', KEYS[3], string.format('%d', seq))
    if tombstone then out[#out + 1] = tombstone end
  end
end
return out
"""
"""The page ``lo..hi`` (ascending in both directions) and the position, in one snapshot. A range without holes
costs one ``XRANGE``; a hole is an erased message, served from ``KEYS[3]`` (seq -> its tombstone frame)."""

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
local first
if ARGV[2] ~= '0' then
  first = math.min(math.max(1, tonumber(ARGV[2])), head + 1)
else
  first = math.max(1, head - tonumber(ARGV[1]) + 1)
end
local old = tonumber(redis.call('HGET', KEYS[1], 'first'))
if first <= old then return 0 end
redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', first))
redis.call('HSET', KEYS[1], 'first', first)
for _, seq in ipairs(redis.call('HKEYS', KEYS[3])) do
  if tonumber(seq) < first then redis.call('HDEL', KEYS[3], seq) end
end
return first - old
"""
"""Drop the seqs below ``first``: the newest ARGV[1] kept, or (ARGV[2] not 0) everything below ARGV[2]; the
tombstones of erased seqs below it go too."""

ERASE: Final = """
local m = redis.call('HMGET', KEYS[1], 'head', 'first')
if not m[1] then return -404 end
local head, first, replaced = tonumber(m[1]), tonumber(m[2]), 0
for i = 1, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  local id = string.format('%d-0', seq)
  if seq >= first and seq <= head and #redis.call('XRANGE', KEYS[2], id, id) == 1 then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    redis.call('XDEL', KEYS[2], id)
    replaced = replaced + 1
  end
end
if replaced == 0 then return 0 end
redis.call('DEL', KEYS[4])
local after = '-'
while true do
  local batch = redis.call('XRANGE', KEYS[2], after, '+', 'COUNT', 1000)
  if #batch == 0 then break end
  for j = 1, #batch do redis.call('XADD', KEYS[4], batch[j][1], unpack(batch[j][2])) end
  after = '(' .. batch[#batch][1]
end
if after == '-' then redis.call('DEL', KEYS[2]) else redis.call('RENAME', KEYS[4], KEYS[2]) end
return replaced
"""
"""Erase: for each (seq, tombstone frame) pair of ARGV whose entry is in the log, record the tombstone in
``KEYS[3]`` and ``XDEL`` the entry; then copy the log to ``KEYS[4]`` and rename it over the log. ``XDEL`` only
flags an entry inside its listpack, whose bytes stay in memory (and in ``DUMP``, RDB files and the AOF's RDB
preamble) until every entry of that node is gone; a stream rebuilt from the live entries has no trace of it.
One atomic step, O(entries in the room): appends to the room wait for it (docs/backends.md, R-ERASE-3)."""

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

LEASE: Final = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if current then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
"""
"""Renew ``KEYS[1]`` (the holder, expiring) if ARGV[1] holds it, else take it if free: the token (from the
counter ``KEYS[2]``, raised on every grant that is not a renewal), or 0 while another holder's key lives."""

RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
"""Delete the holder key only if ARGV[1] is the holder (another's lease is not ours to end)."""
