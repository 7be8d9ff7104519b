local st = redis.call('HMGET', KEYS[1], 'head', 'epoch', 'deleted', 'version')
local meta = redis.call('GET', KEYS[2])
local lr = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local all = redis.call('ZCOUNT', KEYS[4], '(' .. lr, '+inf')
local mine = redis.call('ZCOUNT', KEYS[5], '(' .. lr, '+inf')
return {st[1] or false, st[2] or false, st[3] or false, st[4] or false, meta or false, lr, all, mine}
