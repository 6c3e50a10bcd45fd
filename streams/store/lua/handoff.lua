-- Issue a handoff code for a session, keeping at most max_pending of its codes
-- pending: past the bound the codes with the least life left (the oldest) are
-- revoked, so a session holds a bounded number of codes whoever asks how often.
-- Codes of the session set that are no longer pending (claimed, expired) leave it.
-- KEYS: the session's code set, the new code, its seen marker (one slot: a code is
-- drawn in its session's partition).
-- ARGV: prefix, partitions, code, ticket, ttl (s), seen marker ttl (s), max pending.
-- Returns {0} if the code is pending already (draw another), else {1, revoked...}.
layout(ARGV[1], ARGV[2])
local by, code_key, seen_key = KEYS[1], KEYS[2], KEYS[3]
local ttl, max_pending = tonumber(ARGV[5]), tonumber(ARGV[7])
if redis.call('EXISTS', code_key) == 1 then
  return {0}
end
local pending = {}
for _, c in ipairs(redis.call('SMEMBERS', by)) do
  local left = redis.call('PTTL', key_handoff(c))
  if left == -2 then
    redis.call('SREM', by, c)
  else
    pending[#pending + 1] = {left, c}
  end
end
table.sort(pending, function(a, b) return a[1] < b[1] end)
local out = {1}
for i = 1, #pending - (max_pending - 1) do
  local c = pending[i][2]
  redis.call('DEL', key_handoff(c))
  redis.call('SREM', by, c)
  out[#out + 1] = c
end
redis.call('SET', code_key, ARGV[4], 'EX', ttl)
redis.call('SET', seen_key, 'issued', 'EX', ARGV[6])
redis.call('SADD', by, ARGV[3])
redis.call('EXPIRE', by, ttl)
return out
