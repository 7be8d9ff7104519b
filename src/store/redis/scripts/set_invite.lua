local st = redis.call('HMGET', KEYS[1], 'head', 'deleted')
if not st[1] or st[2] == '1' then return -1 end
redis.call('RPUSH', KEYS[3], ARGV[2])
local old = redis.call('GET', KEYS[2]) or ''
if ARGV[1] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[1]) end
return old
