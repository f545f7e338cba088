-- Raise each machine's lastseen to the given one, never lower it.
-- KEYS: machines, version, the machine order. ARGV: machine id, lastseen, machine id, lastseen, ...
-- Returns {written, kept because newer}.
local written, kept = 0, 0
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or ARGV[i + 1] > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    if not current then add_to_order(ARGV[i]) end
    written = written + 1
  else
    kept = kept + 1
  end
end
if written > 0 then redis.call('INCR', KEYS[2]) end
return {written, kept}
