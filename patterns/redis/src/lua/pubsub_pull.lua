-- One pull of a consumer group: redeliveries due, then new messages.
-- KEYS[1] the topic's stream, KEYS[2] its dead-letter stream.
-- ARGV: group, consumer, min idle ms (the ack deadline), max deliveries,
-- max attempts, topic name.
-- Returns {{id, delivery count, {field, value, ...}}, ...}.
-- A pending entry idle past the deadline is claimed by this consumer
-- (XAUTOCLAIM adds one to its delivery count); one whose count would pass
-- max attempts is appended to the dead-letter stream with prism-* fields
-- and acknowledged instead, in this same script, so it is never both
-- delivered and dead-lettered.
local stream, dlq = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local max = tonumber(ARGV[4])
local max_attempts = tonumber(ARGV[5])
local out = {}
-- The fields this script sets on a dead letter (an older value is dropped).
local ours = {
  ['attr:prism-dlq-reason'] = true, ['attr:prism-original-message-id'] = true,
  ['attr:prism-original-topic'] = true, ['attr:prism-attempts'] = true,
  ['attr:prism-group'] = true,
}

local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[3], '0-0', 'COUNT', max)
for _, entry in ipairs(claimed[2]) do
  local id, fields = entry[1], entry[2]
  if not fields then
    -- Trimmed away while pending (Redis 6.2 reports it so): nothing to deliver.
    redis.call('XACK', stream, group, id)
  else
    local pending = redis.call('XPENDING', stream, group, id, id, 1)
    local count = 1
    if pending[1] then count = tonumber(pending[1][4]) end
    if count > max_attempts then
      local args = {'XADD', dlq, '*'}
      for i = 1, #fields, 2 do
        if not ours[fields[i]] then
          args[#args + 1] = fields[i]
          args[#args + 1] = fields[i + 1]
        end
      end
      args[#args + 1] = 'attr:prism-dlq-reason'
      args[#args + 1] = 'max_attempts reached without an ack'
      args[#args + 1] = 'attr:prism-original-message-id'
      args[#args + 1] = id
      args[#args + 1] = 'attr:prism-original-topic'
      args[#args + 1] = ARGV[6]
      args[#args + 1] = 'attr:prism-attempts'
      args[#args + 1] = tostring(max_attempts)
      args[#args + 1] = 'attr:prism-group'
      args[#args + 1] = group
      redis.call(unpack(args))
      redis.call('XACK', stream, group, id)
    else
      out[#out + 1] = {id, count, fields}
    end
  end
end

if #out < max then
  local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #out,
    'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do
      out[#out + 1] = {entry[1], 1, entry[2]}
    end
  end
end
return out
