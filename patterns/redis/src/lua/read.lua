-- One page of a Get or a Scan, read atomically.
--
-- ARGV[3] the page's byte budget (keys plus values; the first item always
-- fits), ARGV[4] how many index members one call may examine, ARGV[5] the
-- mode:
--   'r' id min max                one id, its keys in a ZRANGEBYLEX range
--   'k' id key1 ..                one id, these keys (sorted)
--   's' has_cursor after_id after_key
--                                 the namespace, strictly after the cursor
-- Returns {status, resume_id, resume_key, id1, key1, raw1, id2, ...}:
--   'done'  nothing is left after the items returned;
--   'full'  the budget is used; the next page starts after the last item;
--   'cap'   enough members were examined; resume strictly after
--           (resume_id, resume_key), which may be past the last item.
-- Index members whose item Redis already expired are removed on the way.

local CHUNK = 128
local budget = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local mode = ARGV[5]
local out = {'done', '', ''}
local used, taken, examined = 0, 0, 0
local last_id, last_key = '', ''
local pruned = {}

-- Visits one member; returns false when the page is complete.
local function visit(id, key, prune)
  if examined >= cap then
    out[1], out[2], out[3] = 'cap', last_id, last_key
    return false
  end
  examined = examined + 1
  local raw = redis.call('GET', item_key(id, key))
  if not raw then
    if prune then
      unindex(id, key)
      pruned[id] = true
    end
  else
    local _, expires, value_at = header(raw)
    if live(expires) then
      local size = string.len(key) + string.len(raw) - value_at
      if taken > 0 and used + size > budget then
        out[1] = 'full'
        return false
      end
      used = used + size
      taken = taken + 1
      out[#out + 1] = id
      out[#out + 1] = key
      out[#out + 1] = raw
    end
  end
  last_id, last_key = id, key
  return true
end

-- Visits the keys of id in [min, max]; false when the page is complete.
local function visit_range(id, min, max)
  local index = index_key(id)
  while true do
    local chunk = redis.call('ZRANGEBYLEX', index, min, max, 'LIMIT', 0, CHUNK)
    for j = 1, #chunk do
      if not visit(id, chunk[j], true) then
        return false
      end
    end
    if #chunk < CHUNK then
      return true
    end
    min = '(' .. chunk[#chunk]
  end
end

local function run()
  if mode == 'r' then
    visit_range(ARGV[6], ARGV[7], ARGV[8])
  elseif mode == 'k' then
    for j = 7, #ARGV do
      if not visit(ARGV[6], ARGV[j], false) then
        return
      end
    end
  else
    local min = '-'
    if ARGV[6] == '1' then
      if not visit_range(ARGV[7], '(' .. ARGV[8], '+') then
        return
      end
      min = '(' .. ARGV[7]
    end
    while true do
      local ids = redis.call('ZRANGEBYLEX', KEYS[2], min, '+', 'LIMIT', 0, CHUNK)
      for j = 1, #ids do
        if redis.call('EXISTS', index_key(ids[j])) == 0 then
          redis.call('ZREM', KEYS[2], ids[j])
        elseif not visit_range(ids[j], '-', '+') then
          return
        end
      end
      if #ids < CHUNK then
        return
      end
      min = '(' .. ids[#ids]
    end
  end
end

run()
for id in pairs(pruned) do
  drop_id_if_empty(id)
end
return out
