-- The sweeper: removes up to ARGV[3] items whose expiry is due by the
-- backend's clock, with their index entries (also those of items Redis
-- already reclaimed), and ids left without keys.
-- Returns {entries looked at, items deleted}.

local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local deleted = 0
for j = 1, #due do
  local m = due[j]
  local colon = string.find(m, ':', 1, true)
  local len = tonumber(string.sub(m, 1, colon - 1))
  local id = string.sub(m, colon + 1, colon + len)
  local key = string.sub(m, colon + len + 2)
  local item = base .. 'item:' .. m
  local raw = redis.call('GET', item)
  local gone = true
  if raw then
    local _, expires = header(raw)
    if live(expires) then
      -- Rewritten since; put its expiry entry right.
      gone = false
      if expires == 0 then
        redis.call('ZREM', KEYS[3], m)
      else
        redis.call('ZADD', KEYS[3], expires, m)
      end
    else
      redis.call('DEL', item)
      deleted = deleted + 1
    end
  end
  if gone then
    redis.call('ZREM', index_key(id), key)
    redis.call('ZREM', KEYS[3], m)
    drop_id_if_empty(id)
  end
end
return {tostring(#due), tostring(deleted)}
