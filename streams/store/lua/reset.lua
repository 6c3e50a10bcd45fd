-- Start a new log epoch for one partition: forget its applied offset and
-- fingerprint, but only if the offset is still the one the caller judged.
-- Erasure positions in the old log mean nothing in the new one (its offsets
-- start again), so they are dropped for this partition.
-- ARGV: offsets_key, fingerprints_key, tp, expected offset, prefix. Returns 1 if reset.
local have = redis.call('HGET', ARGV[1], ARGV[3])
if have ~= ARGV[4] then return 0 end
redis.call('HDEL', ARGV[1], ARGV[3])
redis.call('HDEL', ARGV[2], ARGV[3])
local prefix, tp = ARGV[5], ARGV[3]
for _, k in ipairs(redis.call('SMEMBERS', prefix .. ':xs')) do
  local key = prefix .. ':x:{' .. k .. '}'
  local raw = redis.call('GET', key)
  if raw then
    local erasure = cjson.decode(raw)
    if type(erasure.upto) == 'table' and erasure.upto[tp] ~= nil then
      erasure.upto[tp] = nil
      redis.call('SET', key, cjson.encode(erasure))
    end
  end
end
-- The changelog relay forgets the partition's old offsets at the same point.
if redis.call('EXISTS', prefix .. ':cl') == 1 then redis.call('XADD', prefix .. ':cl', '*', 'r', tp) end
redis.call('INCR', prefix .. ':xe')
return 1
