local cur = redis.call('GET', KEYS[1])
if cur and cur ~= 'closed' then return redis.call('INCR', KEYS[1]) end
return 0
