local cur = redis.call('GET', KEYS[1])
if cur == 'closed' then return 0 end
local used = tonumber(cur or '0')
local left = used - tonumber(ARGV[1])
if left < 0 then left = 0 end
redis.call('SET', KEYS[1], left)
return left
