-- Presence state machine, run atomically inside Redis (see gateway/core/presence/engine.py).
--
-- One script with an operation name in ARGV[1], so every operation shares the same
-- helpers and the same SHA. Each per-user operation reads the user's previously
-- declared state and writes the new one in the same atomic step, which is what makes
-- every transition come out of exactly one call, whatever the number of processes.
-- Time is the server's (TIME), so clocks of the gateway processes never matter.
--
-- Every per-user operation does a bounded amount of work, whatever the number of
-- the user's devices (SPEC §12): the user state is derived from two counts (live
-- devices = ZCARD, online ones = the "on" counter), never by walking the devices,
-- and expired devices are removed only once each (amortized, at most
-- EXPIRE_BATCH per call; the sweeper comes back for the rest).
--
-- op "due":    KEYS = {deadlines}
--              ARGV = {"due", limit, lease_ms}
--              -> user ids whose deadline has passed, leased to this caller.
-- per user:    KEYS = {devices, user, spec, deadlines, online, rate?}
--              ARGV = {op, user_id, retention_ms, ...}
--   "beat"     ... device, away (0/1), last_active_ago (-1 = not given), ttl_ms,
--                  away_after_ms, max_devices (0 = no cap), beat_interval_ms,
--                  beat_tolerance_ms (interval 0 = no rate limit)
--   "gone"     ... device, grace_ms, beat_interval_ms, beat_tolerance_ms
--   "settle"   (re-derive after a deadline: device expiries, ended graces)
--   "seed"     ... status (online|away), last_active_ago_ms, window_ms
--              (after Redis lost its data: re-declare a user a process last saw
--              online/away, unless anything is known about them; they stay so for
--              window_ms and then go offline through the sweeper, announced once,
--              unless a heartbeat comes first)
--              -> {previous, status, last_active_ago_ms}
--              or, for a refused "beat", {code, retry_after_ms} with code
--              too_many_devices | rate_limited (nothing about the user changes)
--
-- Keys: devices  ZSET device -> expiry (ms)
--       user     HASH "d:<device>" -> online|away, "on" -> live online devices,
--                     "state" -> declared user state, "active" -> last activity (ms),
--                     "grace" -> end of offline grace
--       spec     STRING online|away, the SPEC's presence:user:{id}; gone when offline
--       deadlines ZSET user -> earliest time the user's state may change by itself
--       online   SET of users currently online or away (SCARD = count)
--       rate     STRING the device's heartbeat budget as a GCRA "theoretical arrival
--                time" (ms); absent = full budget, expires when full again

local EXPIRE_BATCH = 128

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
local rate = KEYS[6]
local uid = ARGV[2]
local retention = tonumber(ARGV[3])
local now = now_ms()

-- Live devices that are online. Kept as a counter so deriving the state is O(1).
local function online_count()
  if redis.call('ZCARD', devices) == 0 then
    return 0 -- also resets a count left behind by a devices key that expired itself
  end
  local n = tonumber(redis.call('HGET', user, 'on'))
  if n then
    return n
  end
  -- State written before the counter existed: count once, then it is kept.
  n = 0
  for _, device in ipairs(redis.call('ZRANGE', devices, 0, -1)) do
    if redis.call('HGET', user, 'd:' .. device) ~= 'away' then
      n = n + 1
    end
  end
  return n
end

-- Devices past their expiry stopped heartbeating: they no longer count. Each is
-- removed once; a backlog larger than a batch is left for the next call (its
-- deadline has passed, so the sweeper settles the user again right away).
local expired = redis.call('ZRANGEBYSCORE', devices, '-inf', now, 'LIMIT', 0, EXPIRE_BATCH)
if #expired > 0 then
  local on = online_count()
  for _, device in ipairs(expired) do
    if redis.call('HGET', user, 'd:' .. device) ~= 'away' then
      on = on - 1
    end
    redis.call('HDEL', user, 'd:' .. device)
  end
  redis.call('ZREM', devices, unpack(expired))
  redis.call('HSET', user, 'on', math.max(0, on))
end

-- online if any live device is online, away if all are away, offline if none is left.
local function derive()
  if redis.call('ZCARD', devices) == 0 then
    return 'offline'
  end
  if online_count() > 0 then
    return 'online'
  end
  return 'away'
end

-- Take one heartbeat from the device's budget (GCRA: one per interval, `tolerance`
-- ms of credit for a burst). `force` always takes (an offline is never refused) but
-- never below an empty budget. Returns ms to wait when refused, else nil.
local function take_beat(interval, tolerance, force)
  local tat = math.max(tonumber(redis.call('GET', rate)) or now, now)
  if tat - now > tolerance then
    if not force then
      return math.ceil(tat - now - tolerance)
    end
    tat = now + tolerance
  end
  tat = tat + interval
  redis.call('SET', rate, string.format('%.3f', tat), 'PXAT', math.ceil(tat))
  return nil
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
      redis.call('HDEL', user, 'grace', 'on')
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
  local cap, interval, tolerance = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
  local live = redis.call('ZSCORE', devices, device)
  -- Limits first: a refused heartbeat changes nothing of the user's devices.
  if not live and cap > 0 and redis.call('ZCARD', devices) >= cap then
    -- A slot frees when the earliest device expires (or one says offline).
    local first = tonumber(redis.call('ZRANGE', devices, 0, 0, 'WITHSCORES')[2])
    return {'too_many_devices', math.max(1, first - now)}
  end
  if interval > 0 then
    local wait = take_beat(interval, tolerance, false)
    if wait then
      return {'rate_limited', math.max(1, wait)}
    end
  end
  local away = ARGV[5] == '1' or lag >= away_after
  local on = online_count()
  if live and redis.call('HGET', user, 'd:' .. device) ~= 'away' then
    on = on - 1
  end
  if not away then
    on = on + 1
  end
  redis.call('ZADD', devices, now + ttl, device)
  redis.call('HSET', user, 'd:' .. device, away and 'away' or 'online', 'on', on)
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
  local interval, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7])
  if redis.call('ZSCORE', devices, device) then
    local on = online_count()
    if redis.call('HGET', user, 'd:' .. device) ~= 'away' then
      on = on - 1
    end
    redis.call('ZREM', devices, device)
    redis.call('HDEL', user, 'd:' .. device)
    redis.call('HSET', user, 'on', math.max(0, on))
    -- Counted against the device's budget (so leaving and coming back does not
    -- refill it), but never refused: an offline is always applied.
    if interval > 0 then
      take_beat(interval, tolerance, true)
    end
  end
  -- A grace starts when the last device leaves; a later "gone" does not extend it.
  if grace_ms > 0 and redis.call('ZCARD', devices) == 0 and not redis.call('HGET', user, 'grace') then
    redis.call('HSET', user, 'grace', now + grace_ms)
  end
  return settle()
elseif op == 'settle' then
  return settle()
elseif op == 'seed' then
  if redis.call('EXISTS', user) == 1 then
    -- Anything known (a heartbeat since, another process's seed) wins: no change.
    local state = redis.call('HGET', user, 'state') or 'offline'
    return {state, state, 0}
  end
  local status, lag, window = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
  -- Declared as before the loss, with no device and an offline pending at the end
  -- of the window: the grace rules of settle() do the rest.
  redis.call('HSET', user, 'state', status, 'active', now - lag, 'grace', now + window)
  redis.call('SADD', online, uid)
  return settle()
end
return redis.error_reply('unknown presence op ' .. tostring(op))
