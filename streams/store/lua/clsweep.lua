-- Publish the end of one partition's keys Redis has forgotten (their key TTLs ran
-- out) into that partition's changelog stream, at most once each.
-- ARGV: prefix, partitions, partition, now (Unix ms), limit.
-- A due key with nothing left becomes a tombstone in one changelog entry (its
-- version floor says where its next session goes on); a key written again since
-- is due later and moves to its new time. Returns the number of tombstones.
layout(ARGV[1], ARGV[2])
local n, now, limit = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local expiries = key_changelog_expiry(n)
local due = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, limit)
local fields, ended = {'o', '{}'}, 0
for _, k in ipairs(due) do
  local names = {key_session(k), key_alias(k), key_devices(k)}
  local later = -1
  for _, name in ipairs(names) do
    local at = redis.call('PEXPIRETIME', name)
    if at == -1 then later = math.huge elseif at > later then later = at end
  end
  if later == -1 then
    redis.call('ZREM', expiries, k)
    ended = ended + 1
    local i = tostring(ended)
    fields[#fields + 1] = 'k' .. i; fields[#fields + 1] = k
    fields[#fields + 1] = 'f' .. i
    fields[#fields + 1] = redis.call('GET', key_version_floor(k)) or ''
    fields[#fields + 1] = 'x' .. i; fields[#fields + 1] = '-2,-2,-2'
    fields[#fields + 1] = 'why' .. i; fields[#fields + 1] = 'expired'
  elseif later == math.huge then
    redis.call('ZREM', expiries, k)
  else
    redis.call('ZADD', expiries, later, k)
  end
end
if ended > 0 then redis.call('XADD', key_changelog(n), '*', unpack(fields)) end
return ended
