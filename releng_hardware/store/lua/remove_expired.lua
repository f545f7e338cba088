-- One bounded step of the retention sweep: HSCAN a few entries of `machines` from the
-- shared cursor and remove the machines seen before the cutoff, unless in the inventory,
-- with every per-machine entry and key the store has.
-- KEYS: machines, machine_records, machine_history, inventory, retention_cursor, version,
--       the machine order.
-- ARGV: key prefix, cutoff (a lastseen), entries to scan.
-- Returns {removed, examined, the cursor after this step}.
local machines, records, history, inventory = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cursor_key, version = KEYS[5], KEYS[6]
local prefix, cutoff, count = ARGV[1], ARGV[2], ARGV[3]
local index = machine_index(prefix, machines)
local reply = redis.call('HSCAN', machines, redis.call('GET', cursor_key) or '0', 'COUNT', count)
local entries, removed = reply[2], 0
for i = 1, #entries, 2 do
  local id, seen = entries[i], entries[i + 1]
  -- lastseen strings sort as the times they write
  if seen < cutoff and redis.call('HEXISTS', inventory, id) == 0 then
    local raw = redis.call('HGET', records, id)
    index.remove(id, raw and cjson.decode(raw) or nil)
    redis.call('HDEL', machines, id)
    redis.call('ZREM', machine_order, order_member(id))
    redis.call('HDEL', records, id)
    redis.call('HDEL', history, id)
    redis.call('DEL', prefix .. KEY.legacy_runs .. id)
    removed = removed + 1
  end
end
redis.call('SET', cursor_key, reply[1])
if removed > 0 then redis.call('INCR', version) end
return {removed, #entries / 2, reply[1]}
