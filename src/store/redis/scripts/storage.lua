local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(lapsed) do redis.call('HDEL', KEYS[3], id) end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local op = ARGV[1]
local function held()
  local sum = 0
  for _, b in ipairs(redis.call('HVALS', KEYS[3])) do sum = sum + tonumber(b) end
  return sum
end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if op == 'reserve' then
  if used + held() + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return 0 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  return 1
elseif op == 'renew' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
  return 1
elseif op == 'commit' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('INCRBY', KEYS[1], ARGV[3])
  return 1
elseif op == 'release' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
  return 1
end
return used + held()
