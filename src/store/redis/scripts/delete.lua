local st = redis.call('HMGET', KEYS[1], 'head', 'deleted')
if not st[1] or st[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'deleted', 1)
redis.call('RPUSH', KEYS[2], ARGV[1])
for k = 3, #KEYS do redis.call('DEL', KEYS[k]) end
return 1
