-- One bounded step of filling the machine order from `machines`: for the machines written before
-- the order existed, and for every machine again once the code that makes its members changed
-- (the digest of store.index.ORDER_DIGEST). HSCAN a few entries from the cursor kept in `state`
-- and add them (ZADD again changes nothing); the first step of a build empties the order, so no
-- member made by another release's rule stays. When the scan wraps, `state` says done for this
-- digest and no step runs again until it changes.
-- Correct while listeners and the sweep write: they keep the order of every machine they add or
-- remove, and HSCAN returns every entry present from the first step to the last.
-- KEYS: machines, state, then the machine order (last). ARGV: entries to scan, the digest.
-- Returns 1 once the order is complete, else 0.
local machines, state = KEYS[1], KEYS[2]
local digest = ARGV[2]
local cursor = build_cursor(state, digest, function() redis.call('DEL', machine_order) end)
if not cursor then return 1 end
local reply = redis.call('HSCAN', machines, cursor, 'COUNT', ARGV[1])
local entries = reply[2]
for i = 1, #entries, 2 do add_to_order(entries[i]) end
return build_advance(state, digest, reply[1])
