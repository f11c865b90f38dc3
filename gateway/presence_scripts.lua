-- Presence state machine, run atomically inside Redis (see gateway/presence.py).
--
-- One script with an operation name in ARGV[1], so every operation shares the same
-- helpers and the same SHA. Each per-user operation reads the user's previously
-- declared state and writes the new one in the same atomic step, which is what makes
-- every transition come out of exactly one call, whatever the number of processes.
-- Time is the server's (TIME), so clocks of the gateway processes never matter.
--
-- op "due":    KEYS = {deadlines}
--              ARGV = {"due", limit, lease_ms}
--              -> user ids whose deadline has passed, leased to this caller.
-- per user:    KEYS = {devices, user, spec, deadlines, online}
--              ARGV = {op, user_id, retention_ms, ...}
--   "beat"     ... device, away (0/1), last_active_ago (-1 = not given), ttl_ms, away_after_ms
--   "gone"     ... device, grace_ms
--   "settle"   (re-derive after a deadline: device expiries, ended graces)
--              -> {previous, status, last_active_ago_ms}
--
-- Keys: devices  ZSET device -> expiry (ms)
--       user     HASH "d:<device>" -> online|away, "state" -> declared user state,
--                     "active" -> last activity (ms), "grace" -> end of offline grace
--       spec     STRING online|away, the SPEC's presence:user:{id}; gone when offline
--       deadlines ZSET user -> earliest time the user's state may change by itself
--       online   SET of users currently online or away (SCARD = count)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local op = ARGV[1]

if op == 'due' then
  local now = now_ms()
  local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  -- Push claimed users past "now" so concurrent sweepers skip them; if this caller
  -- dies before settling them, the lease runs out and another sweeper takes over.
  local lease_end = now + tonumber(ARGV[3])
  for _, uid in ipairs(users) do
    redis.call('ZADD', KEYS[1], 'XX', lease_end, uid)
  end
  return users
end

local devices, user, spec, deadlines, online = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local uid = ARGV[2]
local retention = tonumber(ARGV[3])
local now = now_ms()

-- Devices past their expiry stopped heartbeating: they no longer count.
local expired = redis.call('ZRANGEBYSCORE', devices, '-inf', now)
if #expired > 0 then
  for _, device in ipairs(expired) do
    redis.call('HDEL', user, 'd:' .. device)
  end
  redis.call('ZREMRANGEBYSCORE', devices, '-inf', now)
end

-- online if any live device is online, away if all are away, offline if none is left.
local function derive()
  local live = redis.call('ZRANGE', devices, 0, -1)
  if #live == 0 then
    return 'offline'
  end
  for _, device in ipairs(live) do
    if redis.call('HGET', user, 'd:' .. device) ~= 'away' then
      return 'online'
    end
  end
  return 'away'
end

-- Derive the user state, store it, and keep every derived key in line with it.
local function settle()
  local previous = redis.call('HGET', user, 'state') or 'offline'
  local status = derive()
  local keep_until
  if status ~= 'offline' then
    local first = tonumber(redis.call('ZRANGE', devices, 0, 0, 'WITHSCORES')[2])
    local last = tonumber(redis.call('ZRANGE', devices, -1, -1, 'WITHSCORES')[2])
    redis.call('HDEL', user, 'grace') -- a live device cancels a pending offline
    redis.call('ZADD', deadlines, first, uid)
    redis.call('SET', spec, status, 'PXAT', last)
    -- Safety net if no sweeper runs: a lapsed ZSET just reads as "no devices".
    redis.call('PEXPIREAT', devices, last)
    redis.call('SADD', online, uid)
    keep_until = last
  else
    local grace = tonumber(redis.call('HGET', user, 'grace'))
    if previous ~= 'offline' and grace and grace > now then
      -- Explicit offline waiting out its grace: the user stays as declared until then.
      status = previous
      redis.call('ZADD', deadlines, grace, uid)
      redis.call('SET', spec, status, 'PXAT', grace)
      keep_until = grace
    elseif not redis.call('HGET', user, 'active') then
      -- Never seen (e.g. a beacon for an unknown user): leave nothing behind.
      redis.call('DEL', user, spec, devices)
      redis.call('ZREM', deadlines, uid)
      redis.call('SREM', online, uid)
      return {previous, 'offline', 0}
    else
      redis.call('HDEL', user, 'grace')
      redis.call('DEL', spec, devices)
      redis.call('ZREM', deadlines, uid)
      redis.call('SREM', online, uid)
      keep_until = now
    end
  end
  redis.call('HSET', user, 'state', status)
  -- The hash outlives offline for a while so last_active_ago stays answerable.
  redis.call('PEXPIREAT', user, keep_until + retention)
  local active = tonumber(redis.call('HGET', user, 'active')) or now
  return {previous, status, math.max(0, now - active)}
end

if op == 'beat' then
  local device = ARGV[4]
  local lag = tonumber(ARGV[6])
  local ttl, away_after = tonumber(ARGV[7]), tonumber(ARGV[8])
  local away = ARGV[5] == '1' or lag >= away_after
  redis.call('ZADD', devices, now + ttl, device)
  redis.call('HSET', user, 'd:' .. device, away and 'away' or 'online')
  -- Last activity is the most recent one any device reports; the client only gives
  -- an offset, the clock is the server's.
  local seen
  if lag >= 0 then
    seen = now - lag
  elseif not away then
    seen = now
  end
  local active = tonumber(redis.call('HGET', user, 'active'))
  if seen and (not active or seen > active) then
    redis.call('HSET', user, 'active', seen)
  elseif not active then
    redis.call('HSET', user, 'active', now)
  end
  return settle() -- with a live device again, settle also cancels any pending grace
elseif op == 'gone' then
  local device, grace_ms = ARGV[4], tonumber(ARGV[5])
  redis.call('ZREM', devices, device)
  redis.call('HDEL', user, 'd:' .. device)
  -- A grace starts when the last device leaves; a later "gone" does not extend it.
  if grace_ms > 0 and redis.call('ZCARD', devices) == 0 and not redis.call('HGET', user, 'grace') then
    redis.call('HSET', user, 'grace', now + grace_ms)
  end
  return settle()
elseif op == 'settle' then
  return settle()
end
return redis.error_reply('unknown presence op ' .. tostring(op))
