-- Publish the end of keys Redis has forgotten (their key TTLs ran out) into the
-- changelog stream, at most once each. ARGV: prefix, now (Unix ms), limit.
-- A due key with nothing left becomes a tombstone in one changelog entry (its
-- version floor says where its next session goes on); a key written again since
-- is due later and moves to its new time. Returns the number of tombstones.
local prefix, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expiries = prefix .. ':ex'
local due = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, limit)
local fields, ended = {'o', '{}'}, 0
for _, k in ipairs(due) do
  local names = {prefix .. ':s:{' .. k .. '}', prefix .. ':a:{' .. k .. '}', prefix .. ':dv:{' .. k .. '}'}
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
    fields[#fields + 1] = redis.call('GET', prefix .. ':vf:{' .. k .. '}') or ''
    fields[#fields + 1] = 'x' .. i; fields[#fields + 1] = '-2,-2,-2'
    fields[#fields + 1] = 'why' .. i; fields[#fields + 1] = 'expired'
  elseif later == math.huge then
    redis.call('ZREM', expiries, k)
  else
    redis.call('ZADD', expiries, later, k)
  end
end
if ended > 0 then redis.call('XADD', prefix .. ':cl', '*', unpack(fields)) end
return ended
