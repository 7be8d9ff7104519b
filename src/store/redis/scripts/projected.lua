local st = redis.call('HMGET', KEYS[1], 'head', 'deleted', 'version', 'epoch')
if not st[1] or st[2] == '1' then return -1 end
if ARGV[4] ~= '' and st[3] ~= ARGV[4] then return -4 end
if st[1] ~= ARGV[1] then return -2 end
local i = 8
local n = tonumber(ARGV[i]); i = i + 1
local logs = i; i = i + 2 * n
local ni = tonumber(ARGV[i]); i = i + 1
local items = i
for k = 0, ni - 1 do
  local cur = redis.call('HGET', KEYS[4], ARGV[items + 3 * k]) or ''
  if cur ~= ARGV[items + 3 * k + 1] then return -3 end
end
i = i + 3 * ni
for k = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[logs + 2 * k], ARGV[logs + 2 * k + 1]) end
for k = 0, ni - 1 do
  local id, new = ARGV[items + 3 * k], ARGV[items + 3 * k + 2]
  if new == '' then redis.call('HDEL', KEYS[4], id) else redis.call('HSET', KEYS[4], id, new) end
end
local nc = tonumber(ARGV[i]); i = i + 1
for k = 0, nc - 1 do redis.call('HSET', KEYS[5], ARGV[i + 2 * k], ARGV[i + 2 * k + 1]) end
i = i + 2 * nc
local nm = tonumber(ARGV[i]); i = i + 1
for k = 0, nm - 1 do
  redis.call('ZADD', KEYS[6], ARGV[i + 2 * k], ARGV[i + 2 * k])
  redis.call('ZADD', ARGV[i + 2 * k + 1], ARGV[i + 2 * k], ARGV[i + 2 * k])
end
i = i + 2 * nm
local na = tonumber(ARGV[i]); i = i + 1
for k = 0, na - 1 do redis.call('RPUSH', KEYS[7], ARGV[i + k]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
redis.call('HSET', KEYS[1], 'head', ARGV[2], 'version', ARGV[5])
local head = tonumber(ARGV[1])
for k = 0, n - 1 do
  local seq = ARGV[logs + 2 * k]
  if tonumber(seq) > head and ARGV[6] ~= '' then
    redis.call(ARGV[6], ARGV[7], seq .. '\n' .. st[4] .. '\n' .. ARGV[logs + 2 * k + 1])
  end
end
if ARGV[6] == '' then return {1, string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')} end
return 1
