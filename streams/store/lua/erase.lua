-- Erase customers' session state, if the caller knows every id linked to it.
-- ARGV: prefix, offsets_key, erasure json, then the ids (the customer first).
-- Linked ids the caller did not name (guests merged since it looked, from the
-- link set or the session's anonymous_ids) make it write nothing and return
-- {0, id...}: the caller records a wider erasure on Kafka first, then retries.
-- Otherwise returns {1, sessions deleted, aliases deleted, handoff codes deleted,
-- the erasure json as recorded}.
local prefix, offsets_key, erasure = ARGV[1], ARGV[2], ARGV[3]
local named, ids = {}, {}
for j = 4, #ARGV do named[ARGV[j]] = true; ids[#ids + 1] = ARGV[j] end
local function skey(k) return prefix .. ':s:{' .. k .. '}' end

-- Every guest id ever linked to the customer is named: its records that fold
-- into the customer, or into its own guest session, are covered. A shared
-- device someone else signed in on since keeps their records (they fold into
-- them) and their alias (deleted below only when it points at a named id).
local missing, seen = {}, {}
local function check(k)
  if type(k) == 'string' and not named[k] and not seen[k] then
    seen[k] = true; missing[#missing + 1] = k
  end
end
for _, k in ipairs(ids) do
  for _, linked in ipairs(redis.call('SMEMBERS', prefix .. ':l:{' .. k .. '}')) do check(linked) end
  -- A compressed session is not read here: the link set names its guests too.
  local d = redis.call('HGET', skey(k), 'd')
  if d and string.sub(d, 1, 1) == '{' then
    local session = cjson.decode(d)
    if type(session.anonymous_ids) == 'table' then
      for _, linked in ipairs(session.anonymous_ids) do check(linked) end
    end
  end
end
if #missing > 0 then
  local out = {0}
  for _, k in ipairs(missing) do out[#out + 1] = k end
  return out
end

-- A worker may have applied records past the log ends the caller read: the
-- erasure covers everything the state holds, so a replay erases what the
-- live state erased, no less.
local record = cjson.decode(erasure)
for tp, upto in pairs(record.upto) do
  local applied = tonumber(redis.call('HGET', offsets_key, tp) or '-1')
  if applied + 1 > upto then record.upto[tp] = applied + 1 end
end
if type(record.floors) ~= 'table' then record.floors = {} end
for _, k in ipairs(ids) do
  -- A session Redis forgot after it ended left its version floor.
  local v = redis.call('HGET', skey(k), 'v') or redis.call('GET', prefix .. ':vf:{' .. k .. '}')
  if v then record.floors[k] = tonumber(v) end
end
erasure = cjson.encode(record)

local sessions, aliases, codes = 0, 0, 0
for _, k in ipairs(ids) do
  redis.call('SET', prefix .. ':x:{' .. k .. '}', erasure)
  redis.call('SADD', prefix .. ':xs', k)
  sessions = sessions + redis.call('DEL', skey(k))
  -- The floor moved into the erasure record above.
  redis.call('DEL', prefix .. ':vf:{' .. k .. '}')
  -- The customer's sign-ins on its devices lose its name but still count for the
  -- shared-device guard, as a replay counts the erased sign-in (shared_device.py).
  local dv = prefix .. ':dv:{' .. k .. '}'
  local signed = redis.call('ZSCORE', dv, ids[1])
  if signed then
    redis.call('ZREM', dv, ids[1])
    redis.call('ZADD', dv, 'GT', signed, 'erased:' .. string.format('%d', record.erased_at_ms))
  end
  -- The journey and a pending abandonment timer are the customer's data too.
  redis.call('DEL', prefix .. ':j:{' .. k .. '}')
  redis.call('ZREM', prefix .. ':ab', k)
  local target = redis.call('GET', prefix .. ':a:{' .. k .. '}')
  if target and named[target] then
    aliases = aliases + redis.call('DEL', prefix .. ':a:{' .. k .. '}')
  end
  redis.call('DEL', prefix .. ':l:{' .. k .. '}')
  local by = prefix .. ':handoff-by:{' .. k .. '}'
  for _, code in ipairs(redis.call('SMEMBERS', by)) do
    codes = codes + redis.call('DEL', prefix .. ':handoff:' .. code)
    redis.call('DEL', prefix .. ':handoff-seen:' .. code)
  end
  redis.call('DEL', by)
  -- Open streams of this session end (the gateway reads the notice).
  redis.call('PUBLISH', prefix .. ':u:{' .. k .. '}', cjson.encode({key = k, erased = true}))
end
-- The changelog (where one is kept) gets every erased key's state: a tombstone
-- whose version is the floor the erasure recorded, unless an alias to someone
-- else or device sign-ins remain (streams/core/changelog.py).
if redis.call('EXISTS', prefix .. ':cl') == 1 then
  local fields = {'o', '{}'}
  for idx, k in ipairs(ids) do
    local i = tostring(idx)
    local a, dv = prefix .. ':a:{' .. k .. '}', prefix .. ':dv:{' .. k .. '}'
    fields[#fields + 1] = 'k' .. i; fields[#fields + 1] = k
    fields[#fields + 1] = 'a' .. i; fields[#fields + 1] = redis.call('GET', a) or ''
    fields[#fields + 1] = 'dv' .. i
    fields[#fields + 1] = cjson.encode(redis.call('ZRANGE', dv, 0, -1, 'WITHSCORES'))
    fields[#fields + 1] = 'f' .. i; fields[#fields + 1] = tostring(record.floors[k] or '')
    fields[#fields + 1] = 'x' .. i
    fields[#fields + 1] = '-2,' .. redis.call('PEXPIRETIME', a) .. ',' .. redis.call('PEXPIRETIME', dv)
    fields[#fields + 1] = 'why' .. i; fields[#fields + 1] = 'erased'
    redis.call('ZREM', prefix .. ':ex', k)
  end
  redis.call('XADD', prefix .. ':cl', '*', unpack(fields))
end
-- Batches planned before this step see a new epoch at commit and re-plan.
redis.call('INCR', prefix .. ':xe')
return {1, sessions, aliases, codes, erasure}
