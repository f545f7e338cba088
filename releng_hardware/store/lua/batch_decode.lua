-- Apply one batch of events atomically (store.Store.record): one script per batch, so two
-- listeners on one queue cannot interleave a read-compare-write. The script is the parts
-- batch_*.lua, each one concern, joined in this order before record_batch.lua (store.machines):
-- decode (this part: the arguments, every position, the batch's state), history, lastseen,
-- pending and claims, peers and labels, outcomes, index upkeep, counters.
-- KEYS: machines, machine_records, listener, machine_history, the machine order (last, as
-- machine_order.lua takes it).
-- ARGV: 1 key prefix, 2 now (epoch seconds), 3 runs kept per machine, 4 processed,
--       5 skipped, 6 malformed (the listener's counters), 7 last_message_at,
--       8 the batch: a JSON array of items, each an array laid out as the layout says (one
--         argument: cheaper to send and to unpack than thousands of ARGV),
--       9 the layout (store.BATCH_LAYOUT, JSON): the field names of a worker item and of a
--         pending item in their order, the history entry's field spans (history.lua_spans),
--         a label run line's (peers.lua_spans) and the outcome codes it needs,
--       10 the peer settings (JSON): window (milliseconds), failures (PEER_FAILURES), runs
--         (kept per label), judged (runs the rules judge, config.WINDOW).
-- Returns {written, duplicates, ignored}.
local machines, records, stats, history = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, now, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local layout = cjson.decode(ARGV[9])
local peer = cjson.decode(ARGV[10])
local now_ms = now * 1000
local index = machine_index(prefix, machines)

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
local DEADLINE, ENTRY, LABEL = worker('deadline'), worker('entry'), worker('label')
local QUEUE, TASK_RUN, PENDING_DEADLINE = pending('queue'), pending('task_run'), pending('deadline')
local TIME_FROM, TIME_TO = span('time')
local KEY_FROM, KEY_TO = span('run_key')
local CODE_AT = span('code')
local STARTED_FROM, STARTED_TO = span('started')
local UNKNOWN_START = string.rep('0', STARTED_TO - STARTED_FROM + 1)
local ATTRIBUTION_AT = span('attribution')
local LABEL_FROM, LABEL_TO = span('label')
local MEDIAN_FROM, MEDIAN_TO = span('peer_median')
local RUNNING, COMPLETED, NOT_COUNTED = layout.running, layout.completed, layout.not_counted
local FAILING = {}
for i = 1, #layout.failing do FAILING[string.sub(layout.failing, i, i)] = true end
local NO_LABEL = layout.no_label
-- a judgement only rises: more evidence never takes "task" back
local STRENGTH = {}
for i = 1, #ATTRIBUTIONS do STRENGTH[string.sub(ATTRIBUTIONS, i, i)] = i - 1 end
local function peer_span(name)
  local s = layout.peer[name] or error('a label run line has no field ' .. name)
  return s[1], s[2]
end
local P_TIME_FROM, P_TIME_TO = peer_span('time')
local P_CODE = peer_span('code')
local P_ATTRIBUTION = peer_span('attribution')
local P_DURATION_FROM, P_DURATION_TO = peer_span('duration')
local P_KEY_FROM, P_KEY_TO = peer_span('run_key')
local P_MACHINE = peer_span('machine')
local WINDOW_MS, PEER_FAILURES, LABEL_RUNS = peer.window, peer.failures, peer.runs

-- What the parts share, the one state of the batch: its counts, and what it read and changed.
local batch = {
  written = 0, duplicates = 0, ignored = 0,
  newest = '',  -- the newest lastseen of the batch ('' before the first)
  touched = {},  -- queue -> 'pending' or 'claimed': the queues whose sets the batch changed
  recs = {}, hists = {},  -- machine id -> its record and its history (runs), read once
  changed = {},  -- machine id -> true: the machines whose record and history are written back
  -- per machine of the batch: its group and running start ('' when not running) before the
  -- batch, and its lastseen when the batch raised it
  groups_before = {}, running_before = {}, raised = {},
  labels = {},  -- label ref -> {name, runs}: a label's runs, read once
  changed_labels = {},  -- label ref -> true: the labels written back
}
