-- Claim one partition's carts whose abandonment deadline has passed, at most once each.
-- ARGV: prefix, partitions, partition, now (Unix ms), limit.
-- Each due session leaves the partition's timer set and enters its outbox with its
-- state and version, in this one atomic step: two workers sweeping at once never
-- both claim a cart, and a crash leaves either the timer or the outbox entry.
-- Returns the number of carts claimed.
layout(ARGV[1], ARGV[2])
local n, now, limit = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local timers = key_abandonment(n)
local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, limit)
local claimed = 0
for _, k in ipairs(due) do
  redis.call('ZREM', timers, k)
  local state = redis.call('HMGET', key_session(k), 'v', 'd')
  if state[2] then
    redis.call('XADD', key_outbox(n), '*', 'a', state[2], 'v', state[1], 'at', now)
    claimed = claimed + 1
  end
end
return claimed
