-- Read everything one batch depends on, in one round trip.
-- KEYS[1]: the partition's offsets hash (it routes the script to the partition's slot).
-- ARGV: prefix, partitions, partition, local ('1': only this partition's keys), n_anon, anon..., n_keys, key..., n_tp, tp...,
-- n_journeys, guest..., n_links, customer... (the tps all of that partition; every id
-- one of this partition's: another partition's keys are that partition's to read).
-- Returns {aliases (anon, target pairs), offsets (in tp order), sessions (key, json pairs),
--          erasures (id, erasure json pairs), the partition's erasure epoch,
--          device sign-ins (anon, n, (customer, ms) x n) of anon ids signed in with,
--          version floors (key, version pairs) of keys whose session Redis forgot,
--          waiting sessions (key, pending json pairs) among the keys read,
--          link sets (customer, n, guest x n) of the customers asked for,
--          journeys (guest, n, (member, score) x n) of the guests asked for,
--          the last forward applied per origin partition (origin, id pairs)}.
-- Sessions: of the keys asked for, the aliases' targets, and the customers each anon
-- id signed in to (a copy of a guest's event is a duplicate where its original went).
layout(ARGV[1], ARGV[2])
local part = tonumber(ARGV[3])
local only_here = ARGV[4] == '1'
local i = 5
local aliases, want, seen, devices = {}, {}, {}, {}
-- With only_here, only this partition's keys: an alias's target or a device's customer
-- elsewhere is that partition's (the planner hands work there as forwards).
local function wants(k)
  if not seen[k] and (not only_here or partition_of(k) == part) then
    seen[k] = true; want[#want + 1] = k
  end
end
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local anon = ARGV[i]; i = i + 1
  local target = redis.call('GET', key_alias(anon))
  if target then
    aliases[#aliases + 1] = anon; aliases[#aliases + 1] = target
    wants(target)
  end
  -- Also without an alias (an undo or an ended session took it): the device's sign-ins
  -- still count for the guard. A guest never signed in has none (one empty read).
  local links = redis.call('ZRANGE', key_devices(anon), 0, -1, 'WITHSCORES')
  if #links > 0 then
    devices[#devices + 1] = anon; devices[#devices + 1] = #links / 2
    for j, v in ipairs(links) do
      devices[#devices + 1] = v
      -- An erased customer's sign-in keeps an anonymous name and no session.
      if j % 2 == 1 and string.sub(v, 1, 7) ~= 'erased:' then wants(v) end
    end
  end
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do wants(ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
local offsets = {}
if n > 0 then
  local tps = {}
  for _ = 1, n do tps[#tps + 1] = ARGV[i]; i = i + 1 end
  offsets = redis.call('HMGET', key_offsets(part), unpack(tps))
end
local sessions, floors = {}, {}
for _, k in ipairs(want) do
  local d = redis.call('HGET', key_session(k), 'd')
  if d then
    sessions[#sessions + 1] = k; sessions[#sessions + 1] = d
  else
    local v = redis.call('GET', key_version_floor(k))
    if v then floors[#floors + 1] = k; floors[#floors + 1] = v end
  end
end
local erasures = {}
-- Every erasure raises every partition's epoch, so this partition's says whether any
-- happened.
local epoch = redis.call('GET', key_erasure_epoch(part)) or '0'
-- Until the first erasure there is nothing to look up per key (the hot path).
if epoch ~= '0' then
  for _, k in ipairs(want) do
    local x = redis.call('GET', key_erasure(k))
    if x then erasures[#erasures + 1] = k; erasures[#erasures + 1] = x end
  end
end
local waiting = {}
local wkey = key_waiting(part)
if #want > 0 and redis.call('HLEN', wkey) > 0 then
  local held = redis.call('HMGET', wkey, unpack(want))
  for j, k in ipairs(want) do
    if held[j] then waiting[#waiting + 1] = k; waiting[#waiting + 1] = held[j] end
  end
end
local journeys = {}
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local g = ARGV[i]; i = i + 1
  local entries = redis.call('ZRANGE', key_journey(g), 0, -1, 'WITHSCORES')
  journeys[#journeys + 1] = g; journeys[#journeys + 1] = #entries / 2
  for _, v in ipairs(entries) do journeys[#journeys + 1] = v end
end
local links = {}
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local c = ARGV[i]; i = i + 1
  local members = redis.call('SMEMBERS', key_links(c))
  links[#links + 1] = c; links[#links + 1] = #members
  for _, v in ipairs(members) do links[#links + 1] = v end
end
local marks = redis.call('HGETALL', key_forwards_seen(part))
return {aliases, offsets, sessions, erasures, epoch, devices, floors, waiting, journeys, links, marks}
