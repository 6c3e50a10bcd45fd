-- Claim the carts whose abandonment deadline has passed, at most once each.
-- ARGV: prefix, now (Unix ms), limit.
-- Each due session leaves the timer set and enters the outbox with its state and
-- version, in this one atomic step: two workers sweeping at once never both
-- claim a cart, and a crash leaves either the timer or the outbox entry.
-- Returns the number of carts claimed.
local prefix, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local timers = prefix .. ':ab'
local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, limit)
local claimed = 0
for _, k in ipairs(due) do
  redis.call('ZREM', timers, k)
  local state = redis.call('HMGET', prefix .. ':s:{' .. k .. '}', 'v', 'd')
  if state[2] then
    redis.call('XADD', prefix .. ':n', '*', 'a', state[2], 'v', state[1], 'at', now)
    claimed = claimed + 1
  end
end
return claimed
