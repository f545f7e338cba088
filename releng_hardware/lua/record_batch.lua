-- Apply one batch of events atomically (store.Store.record): one script per batch, so two
-- listeners on one queue cannot interleave a read-compare-write.
-- KEYS: machines, machine_records, listener, machine_history.
-- ARGV: 1 key prefix, 2 now (epoch seconds), 3 runs kept per machine, 4 processed,
--       5 skipped, 6 malformed (the listener's counters), 7 last_message_at,
--       8 the batch: a JSON array of items, each an array laid out as the layout says (one
--         argument: cheaper to send and to unpack than thousands of ARGV),
--       9 the layout (store.BATCH_LAYOUT, JSON): the field names of a worker item and of a
--         pending item in their order, the history entry's field spans (history.lua_spans)
--         and the running outcome code.
-- Returns {written, duplicates, ignored}.
local machines, records, stats, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, now, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local layout = cjson.decode(ARGV[9])

-- Every position is resolved here, before the first write: a layout missing a field fails
-- the batch whole instead of reading nil halfway through it.
local function positions(names)
  local at = {}
  for i, name in ipairs(names) do at[name] = i end
  return function(name)
    return at[name] or error('the batch layout has no field ' .. name)
  end
end
local function span(name)
  local s = layout.entry[name] or error('the history entry has no field ' .. name)
  return s[1], s[2]
end
local worker, pending = positions(layout.worker), positions(layout.pending)
local KIND = worker('kind')
if pending('kind') ~= KIND then error('worker and pending items must keep their kind at one place') end
local ID, SEEN, FIRST, EVENT_TIME = worker('machine_id'), worker('lastseen'), worker('firstseen'),
  worker('event_time')
local PROVISIONER, WORKER_TYPE = worker('provisioner'), worker('worker_type')
local TASK_ID, RUN_ID, STATE, REASON = worker('task_id'), worker('run_id'), worker('state'),
  worker('reason')
local DEADLINE, ENTRY = worker('deadline'), worker('entry')
local QUEUE, TASK_RUN, PENDING_DEADLINE = pending('queue'), pending('task_run'), pending('deadline')
local TIME_FROM, TIME_TO = span('time')
local KEY_FROM, KEY_TO = span('run_key')
local CODE_AT = span('code')
local STARTED_FROM, STARTED_TO = span('started')
local UNKNOWN_START = string.rep('0', STARTED_TO - STARTED_FROM + 1)
local RUNNING = layout.running

local written, duplicates, ignored, newest = 0, 0, 0, ''
local touched, recs, hists, changed = {}, {}, {}, {}

-- A history entry is one fixed-width string whose leading fields sort it: a greater entry
-- is a newer run. A history is its entries, newest first, joined by newlines: string work
-- only, no decoding per write.

-- A machine's record and history, read once per batch.
local function load_machine(id)
  local rec = recs[id]
  if rec then return rec, hists[id] end
  local raw = redis.call('HGET', records, id)
  if raw then
    rec = cjson.decode(raw)
    -- written before the history existed: its run set still knows older redeliveries
    if not rec.outcomes then rec.legacy_runs = 1 end
  else
    rec = {completed = 0, failed = 0, exception = 0}
  end
  recs[id] = rec
  local runs = {}
  for run in string.gmatch(redis.call('HGET', history, id) or '', '[^\n]+') do
    runs[#runs + 1] = run
  end
  hists[id] = runs
  return rec, runs
end

-- The entry to insert for a worker item, or nil for a redelivery; takes out of `runs` the
-- running entry a resolution replaces.
local function new_entry(item, rec, runs)
  local entry = item[ENTRY]
  local code, run_key = string.sub(entry, CODE_AT, CODE_AT), string.sub(entry, KEY_FROM, KEY_TO)
  local at = nil
  for i, run in ipairs(runs) do
    -- a plain find anchored at the run key's place: no substring made per entry
    if string.find(run, run_key, KEY_FROM, true) == KEY_FROM then at = i break end
  end
  if at then
    -- only a resolution replaces a running entry: anything else is a redelivery
    if string.sub(runs[at], CODE_AT, CODE_AT) ~= RUNNING or code == RUNNING then return nil end
    if string.sub(entry, STARTED_FROM, STARTED_TO) == UNKNOWN_START then
      entry = string.sub(entry, 1, STARTED_FROM - 1) .. string.sub(runs[at], STARTED_FROM, STARTED_TO)
        .. string.sub(entry, STARTED_TO + 1)
    end
    table.remove(runs, at)
    return entry
  end
  if #runs >= keep and runs[#runs] > entry then
    -- older than everything a full history keeps: it may have been counted already
    return nil
  end
  if rec.legacy_runs and redis.call('ZSCORE', prefix .. 'runs:' .. item[ID],
      item[TASK_ID] .. '/' .. item[RUN_ID] .. '/' .. item[STATE]) then
    return nil
  end
  return entry
end

-- Newest first, at most `keep`; runs mostly come newest: the place is found near the front.
local function insert_run(runs, entry)
  local place = 1
  while runs[place] and runs[place] > entry do place = place + 1 end
  table.insert(runs, place, entry)
  while #runs > keep do runs[#runs] = nil end
end

-- lastseen only moves forward, firstseen only back.
local function note_seen(id, rec, seen, first)
  local current = redis.call('HGET', machines, id)
  if (not current) or seen > current then redis.call('HSET', machines, id, seen) end
  if not current then add_to_order(id) end
  if (not rec.firstseen) or first < rec.firstseen then rec.firstseen = first end
end

local rank = {running = '0', completed = '1', failed = '1', exception = '1'}
local function order(seen, state, task_id, run_id)
  return seen .. '|' .. rank[state] .. '|' .. task_id .. '|' .. run_id
end

-- The record's last task is its newest event's, whatever order the events come in.
local function note_last_task(rec, item)
  local event_time, state, task_id, run_id = item[EVENT_TIME], item[STATE], item[TASK_ID], item[RUN_ID]
  if (not rec.task_id) or order(event_time, state, task_id, run_id)
      > order(rec.task_time, rec.state, rec.task_id, tostring(rec.run_id)) then
    local reason = item[REASON]
    rec.provisioner, rec.worker_type = item[PROVISIONER], item[WORKER_TYPE]
    rec.task_id, rec.run_id, rec.state, rec.task_time = task_id, tonumber(run_id), state, event_time
    if reason ~= '' then rec.reason_resolved = reason else rec.reason_resolved = nil end
  end
end

-- A started or resolved run is claimed for good, so a late task-pending cannot bring it back.
local function claim(item)
  local deadline = item[DEADLINE]
  if deadline == '' then return end
  local queue = item[PROVISIONER] .. '/' .. item[WORKER_TYPE]
  local task_run = item[TASK_ID] .. '/' .. item[RUN_ID]
  redis.call('ZREM', prefix .. 'pending:' .. queue, task_run)
  redis.call('ZADD', prefix .. 'claimed:' .. queue, deadline, task_run)
  touched[queue] = touched[queue] or 'claimed'
end

local function record_worker(item)
  local id, state = item[ID], item[STATE]
  local rec, runs = load_machine(id)
  local entry = new_entry(item, rec, runs)
  if not entry then
    duplicates = duplicates + 1
    return
  end
  written = written + 1
  changed[id] = true
  rec.source = nil  -- seen by the listener now, not only by a backfill
  insert_run(runs, entry)
  local seen = item[SEEN]
  note_seen(id, rec, seen, item[FIRST])
  note_last_task(rec, item)
  if state ~= 'running' then rec[state] = (rec[state] or 0) + 1 end
  if seen > newest then newest = seen end
  claim(item)
end

local function record_pending(item)
  local queue, task_run, deadline = item[QUEUE], item[TASK_RUN], item[PENDING_DEADLINE]
  if tonumber(deadline) > now and not redis.call('ZSCORE', prefix .. 'claimed:' .. queue, task_run) then
    if redis.call('ZADD', prefix .. 'pending:' .. queue, deadline, task_run) == 1 then
      written = written + 1
    else
      duplicates = duplicates + 1
    end
    touched[queue] = 'pending'
  else
    -- already started, resolved or past its deadline: a late or stale task-pending
    ignored = ignored + 1
  end
end

-- What the problem rules read with every machine, so no request decodes histories.
local function note_outcomes(rec, runs)
  local outcomes = {}
  for _, run in ipairs(runs) do
    local run_code = string.sub(run, CODE_AT, CODE_AT)
    if run_code ~= RUNNING then outcomes[#outcomes + 1] = run_code end
  end
  rec.outcomes = table.concat(outcomes)
end

-- A full history recognises every redelivery older than its oldest run: the run set of
-- the version before the history is needed no further back.
local function trim_legacy_runs(id, rec, runs)
  if not (rec.legacy_runs and #runs >= keep) then return end
  local oldest = tonumber(string.sub(runs[#runs], TIME_FROM, TIME_TO)) / 1000
  local legacy = prefix .. 'runs:' .. id
  redis.call('ZREMRANGEBYSCORE', legacy, '-inf', '(' .. oldest)
  if redis.call('EXISTS', legacy) == 0 then rec.legacy_runs = nil end
end

local function save_machines()
  for id in pairs(changed) do
    local rec, runs = recs[id], hists[id]
    note_outcomes(rec, runs)
    trim_legacy_runs(id, rec, runs)
    redis.call('HSET', records, id, cjson.encode(rec))
    redis.call('HSET', history, id, table.concat(runs, '\n'))
  end
end

-- Tasks past their deadline leave the pending and claimed sets of the queues touched.
local function trim_queues()
  for queue, why in pairs(touched) do
    if why == 'pending' then redis.call('SADD', prefix .. 'pending_queues', queue) end
    redis.call('ZREMRANGEBYSCORE', prefix .. 'pending:' .. queue, '-inf', now)
    redis.call('ZREMRANGEBYSCORE', prefix .. 'claimed:' .. queue, '-inf', now)
  end
end

local function count()
  redis.call('HINCRBY', stats, 'processed', ARGV[4])
  redis.call('HINCRBY', stats, 'skipped', ARGV[5])
  redis.call('HINCRBY', stats, 'malformed', ARGV[6])
  redis.call('HINCRBY', stats, 'written', written)
  redis.call('HINCRBY', stats, 'duplicate', duplicates)
  redis.call('HINCRBY', stats, 'ignored', ignored)
  redis.call('HSET', stats, 'last_message_at', ARGV[7])
end

-- The version tells the web its ETags are stale; newest_event_at only moves forward.
local function note_version()
  if written > 0 then redis.call('INCR', prefix .. 'version') end
  if newest ~= '' then
    local known = redis.call('HGET', stats, 'newest_event_at')
    if (not known) or newest > known then redis.call('HSET', stats, 'newest_event_at', newest) end
  end
end

for _, item in ipairs(cjson.decode(ARGV[8])) do
  local kind = item[KIND]
  if kind == 'w' then
    record_worker(item)
  elseif kind == 'p' then
    record_pending(item)
  else
    return redis.error_reply('unknown record kind ' .. tostring(kind))
  end
end
save_machines()
trim_queues()
count()
note_version()
return {written, duplicates, ignored}
