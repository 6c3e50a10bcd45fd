-- Acknowledge one partition's published outbox entries; count each one's KPIs only
-- on its first ack, in that partition's KPI hash.
-- ARGV: prefix, partitions, partition, group, then per entry: id, n, (kpi field,
-- increment) x n.
-- Returns one flag per entry: 1 if this call acknowledged it, 0 if another relay
-- already had (it was re-claimed after a stall and published twice, same id).
layout(ARGV[1], ARGV[2])
local n, group = tonumber(ARGV[3]), ARGV[4]
local stream, kpis = key_outbox(n), key_kpis(n)
local out, i = {}, 5
while i <= #ARGV do
  local id, count = ARGV[i], tonumber(ARGV[i + 1])
  local first = redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  for j = 0, count - 1 do
    if first == 1 then
      redis.call('HINCRBY', kpis, ARGV[i + 2 + 2 * j], ARGV[i + 3 + 2 * j])
    end
  end
  out[#out + 1] = first
  i = i + 2 + 2 * count
end
return out
