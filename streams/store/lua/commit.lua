-- Apply one batch plan atomically, if and only if nothing it read has changed.
-- KEYS[1]: the partition's offsets hash (it routes the script to the partition's slot).
-- ARGV head: prefix, partitions, partition, erasure_epoch, local
-- (the partition's erasure epoch as read with the snapshot), then counted sections, each a
-- row count n and n rows of its columns, in this order. Declared once in Python
-- (COMMIT_SECTIONS in streams/store/scripts.py); a test checks this list and the
-- section(width) calls below against it.
--   expected_versions: key, version
--   expected_aliases: anon, target (target '' if none)
--   expected_offsets: tp, offset (offset -1 if none)
--   expiry: grace_ms, floor_ms (0 or 1 row; none sets no key TTLs)
--   expired: key (sessions ended, and guests merged into them)
--   writes: key, version, session, notice
--   deletes: key, merged_into, notice
--   alias_writes: anon, target
--   alias_deletes: anon
--   links: anon, customer (every sign-in's, the final aliases' included)
--   offset_writes: tp, offset, fingerprint (of the record at that offset)
--   activity: bucket, ttl_seconds (0 or 1 row)
--   multichannel: bucket, ttl_seconds, member
--   kpis: field, increment
--   journey_entries: key, score, member
--   journey_bounds: max_entries, min_score, ttl_seconds (0 or 1 row)
--   timers: key, deadline_ms (deadline '-' cancels)
--   notifications: json
--   device_signins: anon, customer, ms
--   floors: key, version
--   lifetimes: key, end_ms, ttl_ms (end_ms 0 if no event yet)
--   device_lifetimes: anon, end_ms
--   forwards: partition, key, value (to other partitions, in order)
--   waiting: key, pending (pending '' stops the wait)
--   forward_marks: origin, seq (the last forward applied per origin)
--   device_renames: anon, customer, name (an erased customer's sign-in)
--   changelog: offsets (0 or 1 row: the batch's applied offsets as JSON; none writes no entry)
-- Returns {1} on success, {0, what, name} on a conflict (nothing written).
-- Every name comes from the layout prelude (streams/store/keys.py): this partition's
-- keys are tagged {p<partition>}; a session's keys carry its own id's partition.
layout(ARGV[1], ARGV[2])
local part = tonumber(ARGV[3])
-- '1': the plan changes only this partition's keys (Redis Cluster's one slot); another
-- partition's aliases hear of an ended session by a forward, and expire on their own.
local only_here = ARGV[5] == '1'
local function mine(k) return not only_here or partition_of(k) == part end
local offsets_key, prints_key = key_offsets(part), key_fingerprints(part)
-- An erasure since the snapshot may cover records this plan folded: refuse, re-plan.
if (redis.call('GET', key_erasure_epoch(part)) or '0') ~= ARGV[4] then
  return {0, 'erasure', ARGV[4]}
end
local i = 6
local function section(width)
  local n = tonumber(ARGV[i]); i = i + 1
  local start = i
  i = i + n * width
  return start, n
end
local skey, akey, jkey = key_session, key_alias, key_journey
-- Notices go out on the sharded channel of the key's own partition (SPUBLISH).
local function notify(k, notice) redis.call('SPUBLISH', key_updates(partition_of(k)), notice) end
-- Every key whose session, alias or device sign-ins this commit may change, in
-- first-touched order: the changelog entry carries their state as committed.
local touched, touched_list = {}, {}
local function touch(k)
  if not touched[k] then touched[k] = true; touched_list[#touched_list + 1] = k end
end
-- What this script itself wrote of a session (blob; version, expiry and floor once
-- its lifetime is set), so the changelog entry need not read it back.
local wrote = {}

local s, n = section(2)
for j = 0, n - 1 do
  local k, want = ARGV[s + 2 * j], tonumber(ARGV[s + 2 * j + 1])
  local have = tonumber(redis.call('HGET', skey(k), 'v') or '0')
  if have ~= want then return {0, 'version', k} end
end
s, n = section(2)
for j = 0, n - 1 do
  local k, want = ARGV[s + 2 * j], ARGV[s + 2 * j + 1]
  local have = redis.call('GET', akey(k)) or ''
  if have ~= want then return {0, 'alias', k} end
end
s, n = section(2)
for j = 0, n - 1 do
  local tp, want = ARGV[s + 2 * j], tonumber(ARGV[s + 2 * j + 1])
  local have = tonumber(redis.call('HGET', offsets_key, tp) or '-1')
  if have ~= want then return {0, 'offset', tp} end
end

local clock = redis.call('TIME')
local now_ms = clock[1] * 1000 + math.floor(clock[2] / 1000)
-- Key TTLs (streams/core/expiry.py): what a session wrote lives until its end on
-- event time or this commit, whichever is later, plus the grace, so Redis never
-- forgets a session an event delivered within the grace could still find alive.
s, n = section(2)
local grace, floor_ms = nil, 0
if n == 1 then grace, floor_ms = tonumber(ARGV[s]), tonumber(ARGV[s + 1]) end
local function until_ms(end_ms)
  return math.max(tonumber(end_ms), now_ms) + grace
end
local vfkey = key_version_floor
-- A guest whose alias ended keeps the version floor of the session it pointed at,
-- so its next session goes on from there (plan.py keeps the same floor).
local function keep_floor(anon, version)
  if tonumber(redis.call('GET', vfkey(anon)) or '0') >= tonumber(version) then return end
  if grace then
    redis.call('SET', vfkey(anon), version, 'PXAT', string.format('%d', until_ms(0) + floor_ms))
  else
    redis.call('SET', vfkey(anon), version)
  end
end

-- Sessions that ended (streams/core/expiry.py) leave nothing to their successors:
-- their journeys, the aliases of guests linked to them and their handoff codes go
-- first, so the merges and journey entries below belong to the successors.
local cs, cn = section(1)
local ws, wn = section(4)
local ds, dn = section(3)
local als, aln = section(2)
-- A guest the batch signs in elsewhere is no longer the ended session's: separate
-- commits would have moved its alias first, leaving the ending nothing to end.
local moved_to = {}
for j = 0, aln - 1 do moved_to[ARGV[als + 2 * j]] = ARGV[als + 2 * j + 1] end
for j = 0, cn - 1 do
  local k = ARGV[cs + j]
  touch(k)
  redis.call('DEL', jkey(k))
  local linked = key_links(k)
  local version = redis.call('HGET', skey(k), 'v')
  for _, anon in ipairs(redis.call('SMEMBERS', linked)) do
    -- Another partition's guest hears of it by a forward (plan.py's _expire_here).
    local target = moved_to[anon]
    if mine(anon) and redis.call('GET', akey(anon)) == k and (not target or target == k) then
      touch(anon)
      redis.call('DEL', akey(anon))
      if version and redis.call('EXISTS', skey(anon)) == 0 then keep_floor(anon, version) end
    end
  end
  redis.call('DEL', linked)
  -- A code's "seen" marker stays: a claim of it answers "expired".
  local by = key_handoff_by(k)
  for _, code in ipairs(redis.call('SMEMBERS', by)) do
    redis.call('DEL', key_handoff(code))
  end
  redis.call('DEL', by)
end

-- Deletes before writes: a guest merged and started again in one batch ends up
-- merged (its old session and journey moved) with its new session standing.
for j = 0, dn - 1 do
  local guest, into = ARGV[ds + 3 * j], ARGV[ds + 3 * j + 1]
  touch(guest)
  redis.call('DEL', skey(guest))
  -- A merged guest's versions go on from its customer's (plan.py), not from its own.
  redis.call('DEL', vfkey(guest))
  -- The guest's journey becomes part of the customer's ('' into: it left with a forward).
  if into ~= '' and redis.call('EXISTS', jkey(guest)) == 1 then
    redis.call('ZUNIONSTORE', jkey(into), 2, jkey(into), jkey(guest), 'AGGREGATE', 'MIN')
  end
  redis.call('DEL', jkey(guest))
  notify(guest, ARGV[ds + 3 * j + 2])
end
for j = 0, wn - 1 do
  local b = ws + 4 * j
  touch(ARGV[b])
  wrote[ARGV[b]] = {d = ARGV[b + 2]}
  redis.call('HSET', skey(ARGV[b]), 'v', ARGV[b + 1], 'd', ARGV[b + 2])
  -- The notice carries the state it announces (streams/core/notice.py): a gateway
  -- serves it to the key's streams without reading it back.
  notify(ARGV[b], ARGV[b + 3] .. '\n' .. ARGV[b + 2])
end
for j = 0, aln - 1 do
  local anon, target = ARGV[als + 2 * j], ARGV[als + 2 * j + 1]
  touch(anon)
  redis.call('SET', akey(anon), target)
  -- An alias to another partition's customer cannot follow its session's lifetime:
  -- it lives a session TTL past its last use (each forwarded event sets it again).
  if grace and not mine(target) then
    redis.call('PEXPIREAT', akey(anon), string.format('%d', until_ms(0) + floor_ms))
  end
end
s, n = section(1)
for j = 0, n - 1 do touch(ARGV[s + j]); redis.call('DEL', akey(ARGV[s + j])) end
-- Each customer's linked guest ids, so an erasure finds every guest that ever signed
-- in to it: every sign-in of the batch, also one whose alias a later sign-in or an
-- undo moved on, as separate commits would have added them. The customer's
-- changelog record carries its link set.
s, n = section(2)
for j = 0, n - 1 do
  touch(ARGV[s + 2 * j + 1])
  redis.call('SADD', key_links(ARGV[s + 2 * j + 1]), ARGV[s + 2 * j])
end
s, n = section(3)
-- When each partition was last applied, by Redis's clock: how fresh a read is.
for j = 0, n - 1 do
  local b = s + 3 * j
  redis.call('HSET', offsets_key, ARGV[b], ARGV[b + 1])
  redis.call('HSET', prints_key, ARGV[b], ARGV[b + 2])
  redis.call('HSET', key_offset_times(part), ARGV[b], now_ms)
end
-- The sessions-active estimate: written keys join the current time bucket's
-- HyperLogLog of their own partition (so readers sum disjoint per-partition counts),
-- in the same step so a replay that writes nothing adds nothing.
s, n = section(2)
if n == 1 then
  for j = 0, wn - 1 do
    local hll = key_activity(partition_of(ARGV[ws + 4 * j]), ARGV[s])
    redis.call('PFADD', hll, ARGV[ws + 4 * j])
    redis.call('EXPIRE', hll, ARGV[s + 1])
  end
end
s, n = section(3)
for j = 0, n - 1 do
  local b = s + 3 * j
  local hll = key_multichannel(partition_of(ARGV[b + 2]), ARGV[b])
  redis.call('PFADD', hll, ARGV[b + 2])
  redis.call('EXPIRE', hll, ARGV[b + 1])
end
s, n = section(2)
for j = 0, n - 1 do
  redis.call('HINCRBY', key_kpis(part), ARGV[s + 2 * j], ARGV[s + 2 * j + 1])
end
local js, jn = section(3)
s, n = section(3)
if n == 1 then
  local max_entries, min_score, ttl = tonumber(ARGV[s]), ARGV[s + 1], ARGV[s + 2]
  local touched = {}
  for j = 0, jn - 1 do
    local b = js + 3 * j
    redis.call('ZADD', jkey(ARGV[b]), ARGV[b + 1], ARGV[b + 2])
    touched[ARGV[b]] = true
  end
  for k in pairs(touched) do
    redis.call('ZREMRANGEBYRANK', jkey(k), 0, -(max_entries + 1))
    redis.call('ZREMRANGEBYSCORE', jkey(k), '-inf', '(' .. min_score)
    redis.call('EXPIRE', jkey(k), ttl)
  end
end
s, n = section(2)
for j = 0, n - 1 do
  local k, deadline = ARGV[s + 2 * j], ARGV[s + 2 * j + 1]
  -- A cart's timer lives in its own partition's set, which that partition's sweep reads.
  if deadline == '-' then
    redis.call('ZREM', key_abandonment(partition_of(k)), k)
  else
    redis.call('ZADD', key_abandonment(partition_of(k)), deadline, k)
  end
end
s, n = section(1)
for j = 0, n - 1 do redis.call('XADD', key_outbox(part), '*', 'n', ARGV[s + j]) end
-- Who signed in on which device, for the shared-device guard (the newest 50 kept).
s, n = section(3)
for j = 0, n - 1 do
  local b = s + 3 * j
  local dv = key_devices(ARGV[b])
  touch(ARGV[b])
  redis.call('ZADD', dv, 'GT', ARGV[b + 2], ARGV[b + 1])
  redis.call('ZREMRANGEBYRANK', dv, 0, -51)
end
s, n = section(2)
for j = 0, n - 1 do touch(ARGV[s + 2 * j]); keep_floor(ARGV[s + 2 * j], ARGV[s + 2 * j + 1]) end
-- A written session's keys expire together; its version floor outlives them by one
-- TTL, so the key's next session goes on from it after Redis forgot this one.
-- The changelog's expiry index (ex, in the key's own partition): when each key Redis
-- will forget, so the changelog relay publishes its tombstone then
-- (streams/worker/changelog_relay.py).
local lifetimes_start, lifetimes_n = section(3)
local devices_start, devices_n = section(2)
-- Work for other partitions, after the state it follows from, in the same step.
-- The last id written goes into the changelog entry: its relay publishes the entry
-- only once the forward relay published this far (a restore never has a state
-- whose forwards were lost with Redis).
local last_forward
s, n = section(3)
for j = 0, n - 1 do
  local b = s + 3 * j
  last_forward = redis.call(
    'XADD', key_forwards(part), '*', 'p', ARGV[b], 'k', ARGV[b + 1], 'v', ARGV[b + 2])
end
-- A session that starts or stops waiting is touched: its changelog record carries
-- the wait, so a restore puts it back with the state it goes with.
s, n = section(2)
for j = 0, n - 1 do
  local k, pending = ARGV[s + 2 * j], ARGV[s + 2 * j + 1]
  touch(k)
  if pending == '' then
    redis.call('HDEL', key_waiting(part), k)
  else
    redis.call('HSET', key_waiting(part), k, pending)
  end
end
local marks, marked = {}, false
s, n = section(2)
for j = 0, n - 1 do
  redis.call('HSET', key_forwards_seen(part), ARGV[s + 2 * j], ARGV[s + 2 * j + 1])
  marks[ARGV[s + 2 * j]] = ARGV[s + 2 * j + 1]; marked = true
end
s, n = section(3)
for j = 0, n - 1 do
  local b = s + 3 * j
  local dv = key_devices(ARGV[b])
  local at = redis.call('ZSCORE', dv, ARGV[b + 1])
  if at then
    touch(ARGV[b])
    redis.call('ZREM', dv, ARGV[b + 1])
    redis.call('ZADD', dv, 'GT', at, ARGV[b + 2])
  end
end
local cs, cn = section(1)
local changelog = cn == 1
local function expiries(k) return key_changelog_expiry(partition_of(k)) end
s, n = lifetimes_start, lifetimes_n
if grace then
  for j = 0, n - 1 do
    local b = s + 3 * j
    local k, at = ARGV[b], string.format('%d', until_ms(ARGV[b + 1]))
    -- Read before the expiry: a time already past (no grace) deletes the key now.
    local version = redis.call('HGET', skey(k), 'v')
    local floor_at = string.format('%d', tonumber(at) + tonumber(ARGV[b + 2]))
    redis.call('SET', vfkey(k), version, 'PXAT', floor_at)
    redis.call('PEXPIREAT', skey(k), at)
    if wrote[k] and tonumber(at) > now_ms then
      wrote[k].v, wrote[k].x = version, at
    end
    if changelog then redis.call('ZADD', expiries(k), at, k) end
    -- The journey keeps its own max age when that is sooner.
    local jat = redis.call('PEXPIRETIME', jkey(k))
    if jat == -1 or jat > tonumber(at) then redis.call('PEXPIREAT', jkey(k), at) end
    local linked = key_links(k)
    if redis.call('PEXPIREAT', linked, at) == 1 then
      for _, anon in ipairs(redis.call('SMEMBERS', linked)) do
        local target = moved_to[anon]
    if mine(anon) and redis.call('GET', akey(anon)) == k and (not target or target == k) then
          redis.call('PEXPIREAT', akey(anon), at)
          if changelog then redis.call('ZADD', expiries(anon), at, anon) end
        end
      end
    end
  end
end
-- A device's sign-ins live as long as the newest still counts for the guard.
s, n = devices_start, devices_n
if grace then
  for j = 0, n - 1 do
    local b = s + 2 * j
    local dv, at = key_devices(ARGV[b]), string.format('%d', until_ms(ARGV[b + 1]))
    if redis.call('PEXPIRETIME', dv) < tonumber(at) then
      redis.call('PEXPIREAT', dv, at)
      if changelog then redis.call('ZADD', expiries(ARGV[b]), 'GT', at, ARGV[b]) end
    end
  end
end
-- The changelog entry (this partition's cl): each touched key's state as this commit left it,
-- read back so every path that changed it (merges, expiry, aliases, devices) is
-- covered by one rule. Fields per key i: k<i> key, v<i> version, d<i> the stored
-- session, a<i> alias target, dv<i> device sign-ins (customer, ms, ...),
-- f<i> version floor, x<i> when Redis forgets the session, the alias and the
-- sign-ins ("ms,ms,ms" by PEXPIRETIME: -1 never, -2 absent), l<i> its link set
-- (the guest ids ever signed in to it, for an erasure's reach).
-- Each key's record goes to the stream of the key's own partition, so one relay
-- publishes all of a key's records in commit order (an erasure's tombstone among
-- them: nothing committed before it lands after it). Only this partition's entry
-- carries the batch's offsets ('o'), the last forward applied per origin ('m') and
-- the last forward it wrote ('f'); another partition's ('o' empty) moves no cursor.
-- w<i>: the key's wait for a merge (its held records), '' if none. The entry is
-- written also when no key changed but offsets moved (records handed on, held, or
-- skipped), so the watermark covers every applied offset.
if changelog and (#touched_list > 0 or ARGV[cs] ~= '{}' or marked or last_forward) then
  local entries = {[part] = {'o', ARGV[cs]}}
  if marked then
    entries[part][#entries[part] + 1] = 'm'; entries[part][#entries[part] + 1] = cjson.encode(marks)
  end
  if last_forward then
    entries[part][#entries[part] + 1] = 'f'; entries[part][#entries[part] + 1] = last_forward
  end
  local counts = {[part] = 0}
  for _, k in ipairs(touched_list) do
    local home = partition_of(k)
    if not entries[home] then entries[home] = {'o', '{}'}; counts[home] = 0 end
    local fields = entries[home]
    counts[home] = counts[home] + 1
    local i = tostring(counts[home])
    local w = wrote[k]
    local v, d, xs, floor
    if w and w.x then
      -- Its floor is its version (the lifetimes section set both).
      v, d, xs, floor = w.v, w.d, w.x, w.v
    else
      local state = redis.call('HMGET', skey(k), 'v', 'd')
      v, d, xs = state[1] or '', state[2] or '', redis.call('PEXPIRETIME', skey(k))
      floor = redis.call('GET', vfkey(k)) or ''
    end
    local dvkey = key_devices(k)
    local dv = redis.call('ZRANGE', dvkey, 0, -1, 'WITHSCORES')
    local x = xs .. ',' .. redis.call('PEXPIRETIME', akey(k)) .. ',' .. redis.call('PEXPIRETIME', dvkey)
    fields[#fields + 1] = 'k' .. i; fields[#fields + 1] = k
    fields[#fields + 1] = 'v' .. i; fields[#fields + 1] = v
    fields[#fields + 1] = 'd' .. i; fields[#fields + 1] = d
    fields[#fields + 1] = 'a' .. i; fields[#fields + 1] = redis.call('GET', akey(k)) or ''
    fields[#fields + 1] = 'dv' .. i; fields[#fields + 1] = cjson.encode(dv)
    fields[#fields + 1] = 'f' .. i; fields[#fields + 1] = floor
    fields[#fields + 1] = 'x' .. i; fields[#fields + 1] = tostring(x)
    fields[#fields + 1] = 'l' .. i
    fields[#fields + 1] = cjson.encode(redis.call('SMEMBERS', key_links(k)))
    fields[#fields + 1] = 'w' .. i
    fields[#fields + 1] = redis.call('HGET', key_waiting(home), k) or ''
  end
  for home, fields in pairs(entries) do
    redis.call('XADD', key_changelog(home), '*', unpack(fields))
  end
end
return {1}
