-- Record that the changelog relay published every entry of one partition's stream
-- up to one id, if it still holds that partition's lease.
-- ARGV: prefix, partitions, partition, lease token, last id, cursor json.
-- The entries up to the id leave the stream and the cursor (the applied offsets
-- as of that entry) moves, in one step. Returns 1, or 0 if the lease was lost.
layout(ARGV[1], ARGV[2])
local n, token, last, cursor = tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
if redis.call('GET', key_changelog_lease(n)) ~= token then return 0 end
redis.call('SET', key_changelog_cursor(n), cursor)
local ms, seq = string.match(last, '^(%d+)-(%d+)$')
local first_kept = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
redis.call('XTRIM', key_changelog(n), 'MINID', first_kept)
return 1
