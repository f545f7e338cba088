-- Replace the quarantines of one `<provisioner>/<workerType>` with the given ones (machine id
-- -> their JSON): entries of that queue no longer listed are dropped.
local quarantine, version = KEYS[1], KEYS[2]
local queue, wanted = ARGV[1], cjson.decode(ARGV[2])
local changed = 0
local current = redis.call('HGETALL', quarantine)
for i = 1, #current, 2 do
  local id = current[i]
  if wanted[id] == nil and cjson.decode(current[i + 1]).queue == queue then
    redis.call('HDEL', quarantine, id)
    changed = changed + 1
  end
end
for id, value in pairs(wanted) do
  if redis.call('HGET', quarantine, id) ~= value then
    redis.call('HSET', quarantine, id, value)
    changed = changed + 1
  end
end
if changed > 0 then redis.call('INCR', version) end
return changed
