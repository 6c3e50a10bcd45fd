-- Record that the changelog relay published every entry up to one id, if it
-- still holds the lease. ARGV: prefix, lease token, last id, cursor json.
-- The entries up to the id leave the stream and the cursor (the applied offsets
-- as of that entry) moves, in one step. Returns 1, or 0 if the lease was lost.
local prefix, token, last, cursor = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('GET', prefix .. ':clr') ~= token then return 0 end
redis.call('SET', prefix .. ':clc', cursor)
local ms, n = string.match(last, '^(%d+)-(%d+)$')
redis.call('XTRIM', prefix .. ':cl', 'MINID', ms .. '-' .. string.format('%d', tonumber(n) + 1))
return 1
