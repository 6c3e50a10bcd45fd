-- Erase customers' session state, if the caller knows every id linked to it.
-- ARGV: prefix, partitions, changelog ('1' when the changelog is on), erasure json,
-- then the ids (the customer first).
-- Linked ids the caller did not name (guests merged since it looked, from the
-- link set or the session's anonymous_ids) make it write nothing and return
-- {0, id...}: the caller records a wider erasure on Kafka first, then retries.
-- Otherwise returns {1, sessions deleted, aliases deleted, handoff codes deleted,
-- the erasure json as recorded}.
-- The customer and its linked guests may be homed on different partitions, and
-- every partition's erasure epoch moves: on a single Redis primary this is one
-- atomic script over several slots. On Redis Cluster it becomes a per-partition
-- step of the cross-partition merge saga (later work), not this one script.
layout(ARGV[1], ARGV[2])
local changelog_on = ARGV[3] == '1'
local erasure = ARGV[4]
local named, ids = {}, {}
for j = 5, #ARGV do named[ARGV[j]] = true; ids[#ids + 1] = ARGV[j] end

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
  for _, linked in ipairs(redis.call('SMEMBERS', key_links(k))) do check(linked) end
  -- A compressed session is not read here: the link set names its guests too.
  local d = redis.call('HGET', key_session(k), 'd')
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
-- live state erased, no less. "<topic>:N" is applied in partition N's offsets.
local record = cjson.decode(erasure)
for tp, upto in pairs(record.upto) do
  local n = tonumber(string.match(tp, ':(%d+)$'))
  if n and n < LAYOUT_PARTITIONS then
    local applied = tonumber(redis.call('HGET', key_offsets(n), tp) or '-1')
    if applied + 1 > upto then record.upto[tp] = applied + 1 end
  end
end
if type(record.floors) ~= 'table' then record.floors = {} end
for _, k in ipairs(ids) do
  -- A session Redis forgot after it ended left its version floor.
  local v = redis.call('HGET', key_session(k), 'v') or redis.call('GET', key_version_floor(k))
  if v then record.floors[k] = tonumber(v) end
end
erasure = cjson.encode(record)

local sessions, aliases, codes = 0, 0, 0
for _, k in ipairs(ids) do
  redis.call('SET', key_erasure(k), erasure)
  redis.call('SADD', key_erased_ids(partition_of(k)), k)
  sessions = sessions + redis.call('DEL', key_session(k))
  -- The floor moved into the erasure record above.
  redis.call('DEL', key_version_floor(k))
  -- The customer's sign-ins on its devices lose its name but still count for the
  -- shared-device guard, as a replay counts the erased sign-in (shared_device.py).
  local dv = key_devices(k)
  local signed = redis.call('ZSCORE', dv, ids[1])
  if signed then
    redis.call('ZREM', dv, ids[1])
    redis.call('ZADD', dv, 'GT', signed, 'erased:' .. string.format('%d', record.erased_at_ms))
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
  redis.call('SPUBLISH', key_updates(partition_of(k)), cjson.encode({key = k, erased = true}))
end

-- A pending abandonment timer is the customer's data too, and so is a pending
-- changelog expiry: whichever partition's commit set them, they go.
for n = 0, LAYOUT_PARTITIONS - 1 do
  local ab, ex = key_abandonment(n), key_changelog_expiry(n)
  for _, k in ipairs(ids) do
    redis.call('ZREM', ab, k)
    redis.call('ZREM', ex, k)
  end
end

-- The changelog (where one is kept) gets every erased key's state, in the
-- changelog of the key's partition: a tombstone whose version is the floor the
-- erasure recorded, unless an alias to someone else or device sign-ins remain
-- (streams/core/changelog.py).
local by_partition, partitions_touched = {}, {}
for _, k in ipairs(ids) do
  local n = partition_of(k)
  if not by_partition[n] then
    by_partition[n] = {}; partitions_touched[#partitions_touched + 1] = n
  end
  local group = by_partition[n]
  group[#group + 1] = k
end
for _, n in ipairs(partitions_touched) do
  local cl = key_changelog(n)
  -- Also when the partition's stream is gone (a restore, nothing committed since): the
  -- key's earlier records are on the topic, and only this tombstone removes them.
  if changelog_on or redis.call('EXISTS', cl) == 1 then
    local fields = {'o', '{}'}
    for idx, k in ipairs(by_partition[n]) do
      local i = tostring(idx)
      local a, dv = key_alias(k), key_devices(k)
      fields[#fields + 1] = 'k' .. i; fields[#fields + 1] = k
      fields[#fields + 1] = 'a' .. i; fields[#fields + 1] = redis.call('GET', a) or ''
      fields[#fields + 1] = 'dv' .. i
      fields[#fields + 1] = cjson.encode(redis.call('ZRANGE', dv, 0, -1, 'WITHSCORES'))
      fields[#fields + 1] = 'f' .. i; fields[#fields + 1] = tostring(record.floors[k] or '')
      fields[#fields + 1] = 'x' .. i
      fields[#fields + 1] = '-2,' .. redis.call('PEXPIRETIME', a) .. ',' .. redis.call('PEXPIRETIME', dv)
      fields[#fields + 1] = 'why' .. i; fields[#fields + 1] = 'erased'
    end
    redis.call('XADD', cl, '*', unpack(fields))
  end
end

-- Batches planned before this step see a new epoch at commit and re-plan: every
-- partition's, since a record on any partition may carry an erased id.
for n = 0, LAYOUT_PARTITIONS - 1 do redis.call('INCR', key_erasure_epoch(n)) end
return {1, sessions, aliases, codes, erasure}
