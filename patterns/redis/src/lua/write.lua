-- Put, Mutate and Delete: all operations of one call, atomically.
--
-- KEYS[4] (optional) the idempotency record of the call's token.
-- ARGV[3] the request's fingerprint, ARGV[4] the idempotency window in ms,
-- then the operations, in request order:
--   'p' id key value expires_at_ms('0' = never) expected_version('' = none)
--   'k' id n key1 .. keyN                       delete these keys
--   'r' id start has_end('0'/'1') end           delete keys in [start, end)
-- Returns {'ok', outcomes} | {'replay', outcomes} | {'conflict'}
--       | {'mismatch', operation number (1-based), current version}.

local record = KEYS[4]
local fingerprint = ARGV[3]
if record then
  local seen = redis.call('GET', record)
  if seen then
    local bar = string.find(seen, '|', 1, true)
    if string.sub(seen, 1, bar - 1) ~= fingerprint then
      return {'conflict'}
    end
    return {'replay', string.sub(seen, bar + 1)}
  end
end

local ops = {}
local i = 5
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'p' then
    ops[#ops + 1] = {op = op, id = ARGV[i + 1], key = ARGV[i + 2], value = ARGV[i + 3],
                     expires = ARGV[i + 4], expected = ARGV[i + 5]}
    i = i + 6
  elseif op == 'k' then
    local n = tonumber(ARGV[i + 2])
    local keys = {}
    for j = 1, n do
      keys[j] = ARGV[i + 2 + j]
    end
    ops[#ops + 1] = {op = op, id = ARGV[i + 1], keys = keys}
    i = i + 3 + n
  elseif op == 'r' then
    ops[#ops + 1] = {op = op, id = ARGV[i + 1], start = ARGV[i + 2],
                     has_end = ARGV[i + 3] == '1', stop = ARGV[i + 4]}
    i = i + 5
  else
    return redis.error_reply('prism write script: unknown operation')
  end
end

-- Every condition against the state before the call.
for n, op in ipairs(ops) do
  if op.op == 'p' and op.expected ~= '' then
    local current = 0
    local raw = redis.call('GET', item_key(op.id, op.key))
    if raw then
      local version, expires = header(raw)
      if live(expires) then
        current = version
      end
    end
    if current ~= tonumber(op.expected) then
      return {'mismatch', tostring(n), string.format('%d', current)}
    end
  end
end

local outcomes = {}
for n, op in ipairs(ops) do
  if op.op == 'p' then
    local version = string.format('%d', redis.call('INCR', KEYS[1]))
    local key = item_key(op.id, op.key)
    local raw = version .. ':' .. op.expires .. ':' .. op.value
    if op.expires == '0' then
      redis.call('SET', key, raw)
      redis.call('ZREM', KEYS[3], member_of(op.id, op.key))
    else
      redis.call('SET', key, raw, 'PXAT', op.expires)
      redis.call('ZADD', KEYS[3], op.expires, member_of(op.id, op.key))
    end
    redis.call('ZADD', index_key(op.id), 0, op.key)
    redis.call('ZADD', KEYS[2], 0, op.id)
    outcomes[n] = 'v' .. version
  else
    local keys = op.keys
    if op.op == 'r' then
      local max = '+'
      if op.has_end then
        max = '(' .. op.stop
      end
      keys = redis.call('ZRANGEBYLEX', index_key(op.id), '[' .. op.start, max)
    end
    local removed = 0
    for _, k in ipairs(keys) do
      local key = item_key(op.id, k)
      local raw = redis.call('GET', key)
      if raw then
        local _, expires = header(raw)
        if live(expires) then
          removed = removed + 1
        end
        redis.call('DEL', key)
      end
      unindex(op.id, k)
    end
    drop_id_if_empty(op.id)
    outcomes[n] = 'd' .. string.format('%d', removed)
  end
end

local encoded = table.concat(outcomes, ',')
if record then
  redis.call('SET', record, fingerprint .. '|' .. encoded, 'PX', ARGV[4])
end
return {'ok', encoded}
