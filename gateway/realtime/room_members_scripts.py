"""The Lua scripts behind room membership (gateway/realtime/room_members.py).

Each script is one atomic step on the layout described there; keys are passed in
KEYS where Redis Cluster would need them, the key prefix in ARGV where a script
derives keys from stored entries ("room|user" pairs).
"""

from __future__ import annotations

# Shared Lua: server time in ms, and removing one "room|user" pair's contribution.
LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop_pair(prefix, entry)
  local sep = string.find(entry, '|', 1, true)
  local room = string.sub(entry, 1, sep - 1)
  local user = string.sub(entry, sep + 1)
  local rkey = prefix .. 'city:ws:room:' .. room
  local ukey = prefix .. 'city:ws:user:' .. user
  local n = redis.call('HINCRBY', rkey, user, -1)
  if n <= 0 then redis.call('HDEL', rkey, user) end
  local m = redis.call('HINCRBY', ukey, room, -1)
  if m <= 0 then redis.call('HDEL', ukey, room) end
  return n <= 0
end
local function add_pair(prefix, pkey, entry)
  if redis.call('SADD', pkey, entry) == 0 then return false end
  local sep = string.find(entry, '|', 1, true)
  local room = string.sub(entry, 1, sep - 1)
  local user = string.sub(entry, sep + 1)
  redis.call('HINCRBY', prefix .. 'city:ws:user:' .. user, room, 1)
  return redis.call('HINCRBY', prefix .. 'city:ws:room:' .. room, user, 1) == 1
end
"""

# KEYS: procs, proc set. ARGV: prefix, pid, entry.
# -> 1 the user is new in the room (no process had them), 0 not new, -1 our lease is
# gone (the caller re-registers everything).
JOIN = (
    LIB
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) < now_ms() then return -1 end
if add_pair(ARGV[1], KEYS[2], ARGV[3]) then return 1 end
return 0
"""
)

# KEYS: proc set, room hash. ARGV: prefix, entry, user. -> 1 the user left the room
# (no process holds them there any more), else 0.
LEAVE = (
    LIB
    + """
if redis.call('SREM', KEYS[1], ARGV[2]) == 0 then
  if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return 1 end
  return 0
end
if drop_pair(ARGV[1], ARGV[2]) then return 1 end
return 0
"""
)

# KEYS: procs. ARGV: pid, lease ms. -> 1 if our lease had lapsed or was missing.
RENEW = (
    LIB
    + """
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if not score or tonumber(score) < now then return 1 end
return 0
"""
)

# Replace everything a process holds with the given pairs (registration, recovery).
# KEYS: procs, proc set. ARGV: prefix, pid, lease ms, entries...
RESYNC = (
    LIB
    + """
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do drop_pair(ARGV[1], entry) end
redis.call('DEL', KEYS[2])
for i = 4, #ARGV do add_pair(ARGV[1], KEYS[2], ARGV[i]) end
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[3]), ARGV[2])
return #ARGV - 3
"""
)

# Pop up to ARGV[3] pairs of one process and drop their counts; when none are left,
# forget the process. With ARGV[2] = '' it picks a process whose lease expired
# (reaping); else that process (shutdown). Returns {pid, pairs left, gone pairs...}
# or {} when there is nothing to reap.
REAP = (
    LIB
    + """
local pid = ARGV[2]
if pid == '' then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms(), 'LIMIT', 0, 1)
  if #dead == 0 then return {} end
  pid = dead[1]
end
local pkey = ARGV[1] .. 'city:ws:proc:' .. pid
local out = {pid, 0}
for _, entry in ipairs(redis.call('SPOP', pkey, tonumber(ARGV[3]))) do
  if drop_pair(ARGV[1], entry) then table.insert(out, entry) end
end
local left = redis.call('SCARD', pkey)
if left == 0 then redis.call('ZREM', KEYS[1], pid) end
out[2] = left
return out
"""
)

# Count the user's open sockets (dropping those of processes whose lease expired) and
# add this one unless they already have ARGV[3]. KEYS: procs, the user's socket set.
# ARGV: own pid, member "pid|socket", limit, set TTL ms. -> 1 added, 0 over the limit.
SOCKET_OPEN = (
    LIB
    + """
local now = now_ms()
local alive = {}
alive[ARGV[1]] = true
local count = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local pid = string.sub(m, 1, string.find(m, '|', 1, true) - 1)
  local ok = alive[pid]
  if ok == nil then
    local score = redis.call('ZSCORE', KEYS[1], pid)
    ok = score ~= false and tonumber(score) >= now
    alive[pid] = ok
  end
  if ok then count = count + 1 else redis.call('ZREM', KEYS[2], m) end
end
if count >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""
)

# KEYS: the user's socket set. ARGV: member, TTL ms (re-registering after a lost
# lease, and the periodic refresh: no limit check, the socket is open already).
SOCKET_READD = """
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

SOCKET_CLOSE = "return redis.call('ZREM', KEYS[1], ARGV[1])"

# ARGV: room key prefix, room ids joined by ",". One argument in and one string out
# keep the client's encoding and parsing flat for a page of 100 rooms. KEYS[1] (the
# procs key) is not read: it routes the call to the members' slot on a cluster.
COUNTS = """
local out, i = {}, 0
for room in string.gmatch(ARGV[2], '[^,]+') do
  i = i + 1
  out[i] = redis.call('HLEN', ARGV[1] .. room)
end
return table.concat(out, ',')
"""
