-- Start a new log epoch for one source partition, working on one Redis partition.
-- ARGV: prefix, partitions, partition, tp, expected offset.
-- With an expected offset (the partition's own step): forget tp's applied offset
-- and fingerprint, but only if the offset is still the one the caller judged,
-- and bump the partition's erasure epoch. With '' (every other partition's
-- step, run first): only the erasures below.
-- Either way erasure positions of tp in the old log mean nothing in the new one
-- (its offsets start again), so they are dropped from the erasures recorded
-- under this partition; an erasure of an id homed elsewhere can name tp too
-- (a record carries a customer and a guest id), hence one step per partition.
-- Returns 1 if done (0: the offset moved on, nothing written).
layout(ARGV[1], ARGV[2])
local n, tp, expected = tonumber(ARGV[3]), ARGV[4], ARGV[5]
if expected ~= '' then
  local offsets = key_offsets(n)
  if redis.call('HGET', offsets, tp) ~= expected then return 0 end
  redis.call('HDEL', offsets, tp)
  redis.call('HDEL', key_fingerprints(n), tp)
end
for _, k in ipairs(redis.call('SMEMBERS', key_erased_ids(n))) do
  local key = key_erasure(k)
  local raw = redis.call('GET', key)
  if raw then
    local erasure = cjson.decode(raw)
    if type(erasure.upto) == 'table' and erasure.upto[tp] ~= nil then
      erasure.upto[tp] = nil
      redis.call('SET', key, cjson.encode(erasure))
    end
  end
end
if expected ~= '' then
  -- The changelog relay forgets the partition's old offsets at the same point.
  local cl = key_changelog(n)
  if redis.call('EXISTS', cl) == 1 then redis.call('XADD', cl, '*', 'r', tp) end
  redis.call('INCR', key_erasure_epoch(n))
end
return 1
