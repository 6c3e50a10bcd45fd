-- Start a new log epoch for one partition: forget its applied offset and
-- fingerprint, but only if the offset is still the one the caller judged.
-- ARGV: offsets_key, fingerprints_key, tp, expected offset. Returns 1 if reset.
local have = redis.call('HGET', ARGV[1], ARGV[3])
if have ~= ARGV[4] then return 0 end
redis.call('HDEL', ARGV[1], ARGV[3])
redis.call('HDEL', ARGV[2], ARGV[3])
return 1
