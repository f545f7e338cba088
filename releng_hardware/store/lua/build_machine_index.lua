-- One bounded step of building the machine index (machine_index.lua) from `machines`, for the
-- machines written before it existed, or judged with other thresholds: HSCAN a few entries from
-- the cursor kept in `state`, place each in its group and mark it unjudged; the first step empties
-- the groups of the index before (index.clear_groups). When the scan wraps,
-- `state` says done for these thresholds and no step runs again until they change.
-- Correct while listeners and the sweep write: they keep the index of every machine they write
-- or remove, and HSCAN returns every entry present from the first step to the last.
-- KEYS: machines, machine_records, state. ARGV: key prefix, entries to scan, the thresholds'
-- fingerprint (views.machine_index.limits_fingerprint).
-- Returns 1 once the index is complete for these thresholds, else 0.
local machines, records, state = KEYS[1], KEYS[2], KEYS[3]
local fingerprint = ARGV[3]
local index = machine_index(ARGV[1], machines)
-- the first step of a build: the old index's groups go, each machine's scan places it again
-- (one written meanwhile is placed by its write, and by its scan)
local cursor = build_cursor(state, fingerprint, index.clear_groups)
if not cursor then return 1 end
local reply = redis.call('HSCAN', machines, cursor, 'COUNT', ARGV[2])
local entries = reply[2]
for i = 1, #entries, 2 do
  local id, seen = entries[i], entries[i + 1]
  local raw = redis.call('HGET', records, id)
  local rec = raw and cjson.decode(raw) or nil
  local group = index.group(id, rec)
  index.place(id, nil, group, seen)
  index.running(id, group, rec and rec.state == 'running' and rec.task_time or nil)
  index.unjudge(id)
end
return build_advance(state, fingerprint, reply[1])
