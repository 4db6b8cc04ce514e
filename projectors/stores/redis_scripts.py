"""The Redis store's version guards, run in Redis (Lua): one call per collection per batch applies an
operation only when its version is newer than the one the item holds (``stores/redis_store.py``)."""

# per operation: version key, field, version, op (h: put hash, hr: remove hash, z: put member,
# zr: remove member), structure key, member, payload, expire-at (0: never)
GUARD = """
local out = {}
for i = 1, #ARGV, 8 do
  local vkey, field, ver, op = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local key, member, payload, exp = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], tonumber(ARGV[i + 7])
  local held = redis.call('HGET', vkey, field)
  local hv, live = -1, false
  if held then
    local sep = string.find(held, ':', 1, true)
    hv = tonumber(string.sub(held, 1, sep - 1))
    live = string.sub(held, sep + 1) == '1'
  end
  if hv >= ver then
    out[#out + 1] = 's'
  else
    local changed = false
    local put = (op == 'h' or op == 'z')
    if op == 'z' then
      local cur = redis.call('ZSCORE', key, member)
      changed = (not cur) or tonumber(cur) ~= tonumber(payload)
      redis.call('ZADD', key, payload, member)
    elseif op == 'zr' then
      changed = redis.call('ZREM', key, member) == 1
    elseif op == 'h' then
      local want = cjson.decode(payload)
      local cur = redis.call('HGETALL', key)
      if #cur ~= #want then
        changed = true
      else
        local have = {}
        for j = 1, #cur, 2 do have[cur[j]] = cur[j + 1] end
        for j = 1, #want, 2 do
          if have[want[j]] ~= want[j + 1] then changed = true end
        end
      end
      if changed then
        redis.call('DEL', key)
        redis.call('HSET', key, unpack(want))
      end
    else
      changed = redis.call('DEL', key) == 1
    end
    redis.call('HSET', vkey, field, ARGV[i + 2] .. ':' .. (put and '1' or '0'))
    if exp > 0 then
      redis.call('EXPIREAT', vkey, exp)
      redis.call('EXPIREAT', key, exp)
    end
    out[#out + 1] = changed and 'c' or 'u'
  end
end
return out
"""

# per page: key, version, op (p: put, pr: remove), payload; ARGV[1]: the TTL of a new page (s)
PAGE_GUARD = """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 4 do
  local key, ver, op, payload = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local held = redis.call('GET', key)
  local hv, body = -1, nil
  if held then
    local sep = string.find(held, '|', 1, true)
    hv = tonumber(string.sub(held, 1, sep - 1))
    body = string.sub(held, sep + 1)
  end
  if hv >= ver then
    out[#out + 1] = 's'
  elseif op == 'p' then
    if held then
      redis.call('SET', key, ARGV[i + 1] .. '|' .. payload, 'KEEPTTL')
    else
      redis.call('SET', key, ARGV[i + 1] .. '|' .. payload, 'EX', ttl)
    end
    out[#out + 1] = (body == payload) and 'u' or 'c'
  else
    out[#out + 1] = (redis.call('DEL', key) == 1) and 'c' or 'u'
  end
end
return out
"""
