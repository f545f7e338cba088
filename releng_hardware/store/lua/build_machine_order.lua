-- One bounded step of filling the machine order from `machines`, for the machines written
-- before the order existed: HSCAN a few entries from the cursor kept in `state` and add them
-- (ZADD again changes nothing). When the scan wraps, `state` says 'done' and no step runs again.
-- Correct while listeners and the sweep write: they keep the order of every machine they add or
-- remove, and HSCAN returns every entry present from the first step to the last.
-- KEYS: machines, state, then the machine order (last). ARGV: entries to scan.
-- Returns 1 once the order is complete, else 0.
local machines, state = KEYS[1], KEYS[2]
local cursor = redis.call('GET', state)
if cursor == 'done' then return 1 end
local reply = redis.call('HSCAN', machines, cursor or '0', 'COUNT', ARGV[1])
local entries = reply[2]
for i = 1, #entries, 2 do add_to_order(entries[i]) end
if reply[1] == '0' then
  redis.call('SET', state, 'done')
  return 1
end
redis.call('SET', state, reply[1])
return 0
