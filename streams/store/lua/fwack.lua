-- Record that the forward relay published every entry of one partition's forwards
-- stream up to one id, if it still holds that partition's lease.
-- ARGV: prefix, partitions, partition, lease token, last id.
-- The cursor moves to the id and the entries up to it leave the stream, in one
-- step. Returns 1, or 0 if the lease was lost (nothing changes then).
layout(ARGV[1], ARGV[2])
local n, token, last = tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('GET', key_forwards_lease(n)) ~= token then return 0 end
local ms, seq = string.match(last, '^(%d+)-(%d+)$')
if not ms then return redis.error_reply('fwack: not a stream id: ' .. last) end
redis.call('SET', key_forwards_cursor(n), last)
local first_kept = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
redis.call('XTRIM', key_forwards(n), 'MINID', first_kept)
return 1
