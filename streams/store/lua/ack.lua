-- Acknowledge published outbox entries; count each one's KPIs only on its first ack.
-- ARGV: prefix, group, then per entry: id, n, (kpi field, increment) x n.
-- Returns one flag per entry: 1 if this call acknowledged it, 0 if another relay
-- already had (it was re-claimed after a stall and published twice, same id).
local prefix, group = ARGV[1], ARGV[2]
local stream = prefix .. ':n'
local out, i = {}, 3
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local first = redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  for j = 0, n - 1 do
    if first == 1 then
      redis.call('HINCRBY', prefix .. ':k', ARGV[i + 2 + 2 * j], ARGV[i + 3 + 2 * j])
    end
  end
  out[#out + 1] = first
  i = i + 2 + 2 * n
end
return out
