if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'head', 1, 'version', 1, 'epoch', ARGV[1], 'deleted', 0)
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 1, ARGV[3])
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[4]) end
return 1
