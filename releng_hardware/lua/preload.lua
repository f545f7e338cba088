-- Raise each machine's lastseen to the given one, never lower it.
-- KEYS: machines, version, machine_records, the machine order.
-- ARGV: key prefix, then machine id, lastseen, machine id, lastseen, ...
-- Returns {written, kept because newer}.
local machines, version, records = KEYS[1], KEYS[2], KEYS[3]
local index = machine_index(ARGV[1], machines)
local written, kept = 0, 0
for i = 2, #ARGV, 2 do
  local id, seen = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', machines, id)
  if (not current) or seen > current then
    redis.call('HSET', machines, id, seen)
    local raw = redis.call('HGET', records, id)
    local group = index.group(id, raw and cjson.decode(raw) or nil)
    if not current then
      add_to_order(id)
      index.place(id, nil, group, seen)
    else
      index.place(id, group, group, seen)
    end
    index.unjudge(id)
    written = written + 1
  else
    kept = kept + 1
  end
end
if written > 0 then redis.call('INCR', version) end
return {written, kept}
