-- One machine and everything /machines/<id> judges it by, in one round trip (read only):
-- its lastseen, record and history, the labels its newest runs name, whether the inventory
-- lists it, its quarantine and the tasks waiting per queue.
-- KEYS: machines, machine_records, machine_history, inventory, quarantine, pending_queues.
-- ARGV: 1 the machine id, 2 how many of its newest runs need their label (-1: all),
--       3 a label's key without its reference (store.Store.label_key('')),
--       4, 5 the first and last position of the history entry's label (history.lua_spans),
--       6 its attribution's position, 7 the attribution letters of an entry written since
--         labels (history.ATTRIBUTIONS; an older entry has its reason there, and no label),
--       8 history.NO_LABEL, 9 a pending queue's key without its queue, 10 the lower bound of
--         a pending task's deadline (ZCOUNT's '(<now>'), '' to count no pending tasks.
-- Returns {lastseen, record, history, 1 when an inventory is loaded, 1 when it lists the
-- machine, quarantine, number of queues, then each queue and its count, then each label
-- reference and its stored string} (false where none); only the first five when the
-- machine was never seen.
local machines, records, history, inventory, quarantine, pending_queues =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, labelled = ARGV[1], tonumber(ARGV[2])
local label_prefix, label_from, label_to = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local attribution_at, attributions, no_label = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local pending_prefix, deadline_after = ARGV[9], ARGV[10]

local lastseen = redis.call('HGET', machines, id)
local reply = {lastseen, redis.call('HGET', records, id), redis.call('HGET', history, id),
               redis.call('EXISTS', inventory), redis.call('HEXISTS', inventory, id)}
if not lastseen then return reply end
reply[6] = redis.call('HGET', quarantine, id)

local waiting = {}
if deadline_after ~= '' then
  waiting = pending_counts(pending_queues, pending_prefix, deadline_after)
end
reply[7] = #waiting / 2
for _, value in ipairs(waiting) do reply[#reply + 1] = value end

-- The distinct labels of the newest `labelled` entries, found by position: no entry decoded.
local raw, refs, named = reply[3], {}, {}
local at, entries = 1, 0
while raw and entries ~= labelled and at <= #raw do
  local stop = string.find(raw, '\n', at, true) or (#raw + 1)
  local attribution = string.sub(raw, at + attribution_at - 1, at + attribution_at - 1)
  local ref = string.sub(raw, at + label_from - 1, at + label_to - 1)
  if attribution ~= '' and string.find(attributions, attribution, 1, true)
      and ref ~= no_label and not named[ref] then
    named[ref] = true
    refs[#refs + 1] = ref
  end
  entries, at = entries + 1, stop + 1
end
if #refs == 0 then return reply end
local keys = {}
for i, ref in ipairs(refs) do keys[i] = label_prefix .. ref end
local stored = redis.call('MGET', unpack(keys))
for i, ref in ipairs(refs) do
  reply[#reply + 1] = ref
  reply[#reply + 1] = stored[i]
end
return reply
