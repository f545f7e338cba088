-- What /machines with every field shows, read at one moment (machine_index.lua's keys): every
-- machine's lastseen, judgement and view; the unjudged machines with their generation, record
-- and lastseen, for the caller to judge; the tasks waiting per queue; the quarantines; the
-- inventory's machines.
-- KEYS: machines, machine_records, quarantine, inventory, pending_queues.
-- ARGV: key prefix, the lower bound of a pending task's deadline (pending_counts), the
-- most unjudged machines to return, the index's fingerprint (views.machine_index.index_fingerprint).
-- Returns {-2} while the index is not built for this fingerprint, {-1} when more machines than
-- that are unjudged; else {0, machines (HGETALL), views (HGETALL), judgements (HGETALL),
-- {id, generation, record, lastseen, ...}, {queue, waiting, ...}, quarantines (HGETALL),
-- the inventory's machine ids}. It writes nothing, so it runs while Redis refuses writes (memory
-- full, a read-only replica): a script without flags is refused only at its first write.
local machines, records = KEYS[1], KEYS[2]
local prefix = ARGV[1]
if redis.call('GET', prefix .. KEY.index_state) ~= 'done:' .. ARGV[4] then return {-2} end
local unjudged_key = prefix .. KEY.index_unjudged
if redis.call('HLEN', unjudged_key) > tonumber(ARGV[3]) then return {-1} end
local unjudged = {}
local entries = redis.call('HGETALL', unjudged_key)
for i = 1, #entries, 2 do
  local id = entries[i]
  local lastseen = redis.call('HGET', machines, id)
  if lastseen then
    unjudged[#unjudged + 1] = id
    unjudged[#unjudged + 1] = entries[i + 1]
    unjudged[#unjudged + 1] = redis.call('HGET', records, id) or ''
    unjudged[#unjudged + 1] = lastseen
  end
end
local pending = pending_counts(KEYS[5], prefix .. KEY.pending, ARGV[2])
return {0, redis.call('HGETALL', machines), redis.call('HGETALL', prefix .. KEY.index_views),
  redis.call('HGETALL', prefix .. KEY.index_judged), unjudged, pending,
  redis.call('HGETALL', KEYS[3]), redis.call('HKEYS', KEYS[4])}
