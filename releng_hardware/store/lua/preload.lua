-- Raise each machine's lastseen to the given one, never lower it.
-- KEYS: machines, version, machine_records, the machine order.
-- ARGV: key prefix, then machine id, lastseen, its epoch microseconds, machine id, ...
-- Returns {written, kept because newer}.
local machines, version, records = KEYS[1], KEYS[2], KEYS[3]
local index = machine_index(ARGV[1], machines)

-- true when `seen` raised the machine's lastseen
local function raise(id, seen, score)
  local current, raises = raise_lastseen(machines, id, seen)
  if not raises then return false end
  local group
  if current then
    local raw = redis.call('HGET', records, id)
    group = index.group(id, raw and cjson.decode(raw) or nil)
  else
    -- a machine without a lastseen has no record either: retention removes both
    group = index.group(id, nil)
  end
  index.place(id, current and group or nil, group, seen, score)
  index.unjudge(id)
  return true
end

local written, kept = 0, 0
for i = 2, #ARGV, 3 do
  if raise(ARGV[i], ARGV[i + 1], ARGV[i + 2]) then written = written + 1 else kept = kept + 1 end
end
if written > 0 then redis.call('INCR', version) end
return {written, kept}
