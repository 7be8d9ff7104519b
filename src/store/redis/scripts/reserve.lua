local cur = redis.call('GET', KEYS[1])
if cur == 'closed' then return -1 end
local used = tonumber(cur or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[1])
return 1
