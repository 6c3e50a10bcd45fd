-- One partition's step of an erasure: look at the erased ids homed here, or erase them.
-- KEYS[1]: the partition's offsets hash (it routes the script to the partition's slot).
-- ARGV: prefix, partitions, partition, changelog ('1' when the changelog is on),
-- erasure json ('' to look), then (id, state) pairs, the customer first; state is
-- what the look returned for an id homed here ('' for the others, and to look).
-- Only ids homed on this partition are read or written here: on Redis Cluster a
-- script stays in one slot, so RedisState.erase runs this once per partition
-- (streams/store/state.py says why that is still safe).
--
-- Look: returns {ids linked to an id homed here that the caller did not name,
-- then (id, state, floor) triples of the ids homed here}. A state sums up all an
-- event can change of an id (session version, version floor, alias, link set,
-- device sign-ins); the floor is the version its session had ('' if none).
-- Erase: if any id homed here has another state than the look saw, writes nothing
-- and returns {2}: something was applied since, the caller looks again. Otherwise
-- records the erasure json (as given) under each id homed here, deletes their
-- sessions, aliases, link sets, journeys, handoff codes, ends their open streams,
-- drops every named id's timers and changelog expiry from this partition's
-- indexes, tombstones them in this partition's changelog, moves this partition's
-- erasure epoch, and returns {1, sessions deleted, aliases deleted, codes deleted}.
layout(ARGV[1], ARGV[2])
local part = tonumber(ARGV[3])
local changelog_on = ARGV[4] == '1'
local erasure = ARGV[5]
local named, ids, here, expected = {}, {}, {}, {}
for j = 6, #ARGV, 2 do
  local k = ARGV[j]
  named[k] = true; ids[#ids + 1] = k; expected[k] = ARGV[j + 1]
  if partition_of(k) == part then here[#here + 1] = k end
end

local function state_of(k)
  local links = redis.call('SMEMBERS', key_links(k))
  table.sort(links)
  return table.concat({
    redis.call('HGET', key_session(k), 'v') or '',
    redis.call('GET', key_version_floor(k)) or '',
    redis.call('GET', key_alias(k)) or '',
    table.concat(links, ','),
    table.concat(redis.call('ZRANGE', key_devices(k), 0, -1, 'WITHSCORES'), ','),
  }, '|')
end

if erasure == '' then
  -- Every guest id ever linked to the customer must be named: its records that fold
  -- into the customer, or into its own guest session, are covered. A shared device
  -- someone else signed in on since keeps their records (they fold into them) and
  -- their alias (deleted below only when it points at a named id).
  local missing, seen = {}, {}
  local function check(k)
    if type(k) == 'string' and not named[k] and not seen[k] then
      seen[k] = true; missing[#missing + 1] = k
    end
  end
  local states = {}
  for _, k in ipairs(here) do
    for _, linked in ipairs(redis.call('SMEMBERS', key_links(k))) do check(linked) end
    -- A compressed session is not read here: the link set names its guests too.
    local d = redis.call('HGET', key_session(k), 'd')
    if d and string.sub(d, 1, 1) == '{' then
      local session = cjson.decode(d)
      if type(session.anonymous_ids) == 'table' then
        for _, linked in ipairs(session.anonymous_ids) do check(linked) end
      end
    end
    -- A session Redis forgot after it ended left its version floor.
    local v = redis.call('HGET', key_session(k), 'v') or redis.call('GET', key_version_floor(k))
    states[#states + 1] = k; states[#states + 1] = state_of(k); states[#states + 1] = v or ''
  end
  return {missing, states}
end

for _, k in ipairs(here) do
  if state_of(k) ~= expected[k] then return {2} end
end

local record = cjson.decode(erasure)
local erased_at = string.format('%d', record.erased_at_ms)
local sessions, aliases, codes = 0, 0, 0
local updates = key_updates(part)
for _, k in ipairs(here) do
  redis.call('SET', key_erasure(k), erasure)
  redis.call('SADD', key_erased_ids(part), k)
  sessions = sessions + redis.call('DEL', key_session(k))
  -- The floor moved into the erasure record (the look read it).
  redis.call('DEL', key_version_floor(k))
  -- The customer's sign-ins on its devices lose its name but still count for the
  -- shared-device guard, as a replay counts the erased sign-in (shared_device.py).
  local dv = key_devices(k)
  local signed = redis.call('ZSCORE', dv, ids[1])
  if signed then
    redis.call('ZREM', dv, ids[1])
    redis.call('ZADD', dv, 'GT', signed, 'erased:' .. erased_at)
  end
  -- The journey is the customer's data too.
  redis.call('DEL', key_journey(k))
  local target = redis.call('GET', key_alias(k))
  if target and named[target] then
    aliases = aliases + redis.call('DEL', key_alias(k))
  end
  redis.call('DEL', key_links(k))
  local by = key_handoff_by(k)
  for _, code in ipairs(redis.call('SMEMBERS', by)) do
    codes = codes + redis.call('DEL', key_handoff(code))
    redis.call('DEL', key_handoff_seen(code))
  end
  redis.call('DEL', by)
  -- Open streams of this session end (the gateway reads the notice on the key's shard).
  redis.call('SPUBLISH', updates, cjson.encode({key = k, erased = true}))
end

-- A pending abandonment timer is the customer's data too, and so is a pending
-- changelog expiry: whichever partition's commit set them (one primary, direct
-- mode, sets them where the record came in), they go; each partition's step
-- clears its own indexes.
local ab, ex = key_abandonment(part), key_changelog_expiry(part)
for _, k in ipairs(ids) do
  redis.call('ZREM', ab, k)
  redis.call('ZREM', ex, k)
end

-- The changelog (where one is kept) gets each erased key's state, in the changelog
-- of the key's partition: a tombstone whose version is the floor the erasure
-- recorded, unless an alias to someone else or device sign-ins remain
-- (streams/core/changelog.py).
local cl = key_changelog(part)
-- Also when the partition's stream is gone (a restore, nothing committed since): the
-- key's earlier records are on the topic, and only this tombstone removes them.
if #here > 0 and (changelog_on or redis.call('EXISTS', cl) == 1) then
  local floors = type(record.floors) == 'table' and record.floors or {}
  local fields = {'o', '{}'}
  for idx, k in ipairs(here) do
    local i = tostring(idx)
    local a, dv = key_alias(k), key_devices(k)
    fields[#fields + 1] = 'k' .. i; fields[#fields + 1] = k
    fields[#fields + 1] = 'a' .. i; fields[#fields + 1] = redis.call('GET', a) or ''
    fields[#fields + 1] = 'dv' .. i
    fields[#fields + 1] = cjson.encode(redis.call('ZRANGE', dv, 0, -1, 'WITHSCORES'))
    fields[#fields + 1] = 'f' .. i; fields[#fields + 1] = tostring(floors[k] or '')
    fields[#fields + 1] = 'x' .. i
    fields[#fields + 1] = '-2,' .. redis.call('PEXPIRETIME', a) .. ',' .. redis.call('PEXPIRETIME', dv)
    fields[#fields + 1] = 'why' .. i; fields[#fields + 1] = 'erased'
  end
  redis.call('XADD', cl, '*', unpack(fields))
end

-- Batches of this partition planned before this step see a new epoch at commit and
-- re-plan (every partition takes this step, ids homed here or not).
redis.call('INCR', key_erasure_epoch(part))
return {1, sessions, aliases, codes}
