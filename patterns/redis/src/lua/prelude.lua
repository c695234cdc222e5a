-- Shared by every Prism script (prepended to each). The layout is ADR-006's;
-- src/layout.rs builds the same names on the Rust side.
--
-- KEYS[1] the version counter, KEYS[2] the ids set, KEYS[3] the expiry set
-- (all declared, so a cluster client routes the call to the namespace's
-- slot; every other key the scripts touch shares their hash tag).
-- ARGV[1] the namespace's key base `<prefix>:{<namespace>}:`,
-- ARGV[2] now, in ms since the epoch, from the backend's clock: visibility
-- follows that clock, not Redis's.
local base = ARGV[1]
local now = tonumber(ARGV[2])

-- `<byte length of id>:<id>:<key>`
local function member_of(id, key)
  return string.len(id) .. ':' .. id .. ':' .. key
end

local function item_key(id, key)
  return base .. 'item:' .. member_of(id, key)
end

local function index_key(id)
  return base .. 'keys:' .. id
end

-- A stored item is `<version>:<expires_at_ms, 0 = never>:<value>`.
-- Returns version, expiry and the position of the second ':'.
local function header(raw)
  local a = string.find(raw, ':', 1, true)
  local b = string.find(raw, ':', a + 1, true)
  return tonumber(string.sub(raw, 1, a - 1)), tonumber(string.sub(raw, a + 1, b - 1)), b
end

local function live(expires)
  return expires == 0 or expires > now
end

-- Forgets (id, key) in the indexes; its item key is gone or being deleted.
local function unindex(id, key)
  redis.call('ZREM', index_key(id), key)
  redis.call('ZREM', KEYS[3], member_of(id, key))
end

-- Drops an id without keys from the ids set.
local function drop_id_if_empty(id)
  if redis.call('EXISTS', index_key(id)) == 0 then
    redis.call('ZREM', KEYS[2], id)
  end
end

