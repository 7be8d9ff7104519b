local st = redis.call('HMGET', KEYS[1], 'head', 'epoch', 'deleted', 'version')
if not st[1] or st[3] == '1' then return {-1} end
if ARGV[1] ~= '' and st[4] ~= ARGV[1] then return {-2} end
local out = {st[2]}
local n = tonumber(ARGV[4])
for k = 0, n - 1 do
  local f, e, mk = ARGV[5 + 3 * k], ARGV[6 + 3 * k], ARGV[7 + 3 * k]
  local dup = redis.call('HGET', KEYS[3], f)
  if dup then
    out[#out + 1] = -tonumber(dup)
  else
    local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
    redis.call('HSET', KEYS[2], seq, e)
    redis.call('HSET', KEYS[3], f, seq)
    redis.call('ZADD', KEYS[4], seq, seq)
    redis.call('ZADD', mk, seq, seq)
    if ARGV[2] ~= '' then redis.call(ARGV[2], ARGV[3], seq .. '\n' .. st[2] .. '\n' .. e) end
    out[#out + 1] = seq
  end
end
if ARGV[2] == '' then out[#out + 1] = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') end
return out
