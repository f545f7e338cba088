-- Apply one batch of events atomically (store.Store.record): one script per batch, so two
-- listeners on one queue cannot interleave a read-compare-write.
-- KEYS: machines, machine_records, listener, machine_history.
-- ARGV: 1 key prefix, 2 now (epoch seconds), 3 runs kept per machine, 4 processed,
--       5 skipped, 6 malformed (the listener's counters), 7 last_message_at,
--       8 the batch: a JSON array of items, each an array laid out as the layout says (one
--         argument: cheaper to send and to unpack than thousands of ARGV),
--       9 the layout (store.BATCH_LAYOUT, JSON): the field names of a worker item and of a
--         pending item in their order, the history entry's field spans (history.lua_spans),
--         a label run line's (peers.lua_spans) and the outcome codes it needs,
--       10 the peer settings (JSON): window (milliseconds), failures (PEER_FAILURES), runs
--         (kept per label), judged (runs the rules judge, problems.WINDOW).
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
local NO_LABEL, NO_ATTRIBUTION = layout.no_label, layout.no_attribution
-- a judgement only rises: more evidence never takes "task" back
local STRENGTH = {N = 0, M = 1, T = 2}
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

local written, duplicates, ignored, newest = 0, 0, 0, ''
local touched, recs, hists, changed = {}, {}, {}, {}
-- per machine of the batch: its group and running start ('' when not running) before the
-- batch, and its lastseen when the batch raised it
local groups_before, running_before, raised = {}, {}, {}
local labels, changed_labels = {}, {}

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
  -- what its group is made of: the group itself is made only if it changes
  groups_before[id] = raw and {rec.provisioner, rec.worker_type} or false
  running_before[id] = rec.state == 'running' and rec.task_time or ''
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
    -- a run's label is that of any of its messages: the start may have said it
    local started_label = string.sub(runs[at], LABEL_FROM, LABEL_TO)
    if item[LABEL] == '' and STRENGTH[string.sub(runs[at], ATTRIBUTION_AT, ATTRIBUTION_AT)]
        and started_label ~= NO_LABEL then
      entry = string.sub(entry, 1, LABEL_FROM - 1) .. started_label .. string.sub(entry, LABEL_TO + 1)
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
  if (not current) or seen > current then
    redis.call('HSET', machines, id, seen)
    raised[id] = seen
  end
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

-- Peers. Per label one string key: the label, then its newest resolved runs (LABEL_RUNS at
-- most), newest first, one fixed-width line each (peers.PEER_FIELDS). A run is judged by the
-- lines of other machines within WINDOW_MS of it; the definition is peers.peer_counts'.
--
-- This runs for every labelled resolution, over the lines of its label: a line is read in
-- place, never cut up. Its code and attribution are compared as bytes and its machine by a
-- plain find at the machine's place. The time leads the line at a fixed width, so string order
-- is time order: the lines within the window of a time, newest first like all of them, are
-- the ones between two bounds, found from each end (mostly at once: most are within).
local byte, sub, find = string.byte, string.sub, string.find
local B_COMPLETED, B_RUNNING, B_NOT_COUNTED = byte(COMPLETED), byte(RUNNING), byte(NOT_COUNTED)
local B_NO_ATTRIBUTION, B_TASK, B_SPACE = byte(NO_ATTRIBUTION), byte('T'), byte(' ')
local B_FAILING = {}
for code in pairs(FAILING) do B_FAILING[byte(code)] = true end
if P_TIME_FROM ~= 1 then error('a label run line must begin with its time') end
local P_TIME_WIDTH = P_TIME_TO - P_TIME_FROM + 1
local P_TIME_FORMAT = '%0' .. P_TIME_WIDTH .. 'd'
local P_TIME_LIMIT = 10 ^ P_TIME_WIDTH
local NO_MEDIAN = string.rep('0', MEDIAN_TO - MEDIAN_FROM + 1)

local function replace_at(text, from, to, value)
  return sub(text, 1, from - 1) .. value .. sub(text, to + 1)
end

local function line_machine(line)
  return string.match(line, '^(%S+)', P_MACHINE)
end

-- Whether a line is a run of machine `id` (what line_machine(line) == id says, made for none).
local function line_of(line, id)
  if find(line, id, P_MACHINE, true) ~= P_MACHINE then return false end
  local after = byte(line, P_MACHINE + #id)
  return after == nil or after == B_SPACE
end

-- The first and last place of the lines (newest first) within WINDOW_MS of `time`: a line of
-- a time within is >= low and < high (no high: no time of the line's width is past it).
local function window(runs, time)
  local low, high = time - WINDOW_MS, time + WINDOW_MS + 1
  low = string.format(P_TIME_FORMAT, low > 0 and low or 0)
  local first, last = 1, #runs
  if high < P_TIME_LIMIT then
    high = string.format(P_TIME_FORMAT, high)
    while first <= last and runs[first] >= high do first = first + 1 end
  end
  while last >= first and runs[last] < low do last = last - 1 end
  return first, last
end

-- A label's runs, read once per batch; nil when neither stored nor named by the item.
local function load_label(ref, name)
  local lab = labels[ref]
  if lab then return lab end
  local raw = redis.call('GET', prefix .. 'label:' .. ref)
  local lines = {}
  if raw then
    -- a plain find per line: several times cheaper than a pattern
    local n, at, size = 0, 1, #raw
    while at <= size do
      local stop = find(raw, '\n', at, true) or size + 1
      if stop > at then
        n = n + 1
        lines[n] = sub(raw, at, stop - 1)
      end
      at = stop + 1
    end
    name = table.remove(lines, 1)
  elseif name == '' then
    return nil
  end
  lab = {name = name, runs = lines}
  labels[ref] = lab
  return lab
end

-- "T" when PEER_FAILURES other machines failed a peer run, else "M" when one completed one.
local function judge(lab, id, time)
  local runs = lab.runs
  local failed, completed, failures = {}, false, 0
  local first, last = window(runs, time)
  for at = first, last do
    local line = runs[at]
    local code = byte(line, P_CODE)
    if (B_FAILING[code] or code == B_COMPLETED) and not line_of(line, id) then
      if code == B_COMPLETED then
        completed = true
      else
        local machine = line_machine(line)
        if not failed[machine] then failed[machine], failures = true, failures + 1 end
      end
    end
  end
  if failures >= PEER_FAILURES then return 'T' end
  return completed and 'M' or NO_ATTRIBUTION
end

-- The median duration of the completed peer runs, 0 with fewer than 3.
local function peer_median(lab, id, time)
  local runs = lab.runs
  local durations, n = {}, 0
  local first, last = window(runs, time)
  for at = first, last do
    local line = runs[at]
    if byte(line, P_CODE) == B_COMPLETED and not line_of(line, id) then
      local duration = tonumber(sub(line, P_DURATION_FROM, P_DURATION_TO))
      if duration > 0 then n = n + 1 durations[n] = duration end
    end
  end
  if n < 3 then return 0 end
  table.sort(durations)
  if n % 2 == 1 then return durations[(n + 1) / 2] end
  return math.floor((durations[n / 2] + durations[n / 2 + 1]) / 2)
end

-- Another machine's run judged anew: its label line and its history entry.
local function rejudge(lab, at, line)
  local old = sub(line, P_ATTRIBUTION, P_ATTRIBUTION)
  local machine = line_machine(line)
  local time = tonumber(sub(line, P_TIME_FROM, P_TIME_TO))
  local new = judge(lab, machine, time)
  if STRENGTH[new] <= STRENGTH[old] then return end
  lab.runs[at] = replace_at(line, P_ATTRIBUTION, P_ATTRIBUTION, new)
  local run_key = sub(line, P_KEY_FROM, P_KEY_TO)
  local rec, runs = load_machine(machine)
  for i, run in ipairs(runs) do
    if find(run, run_key, KEY_FROM, true) == KEY_FROM then
      if STRENGTH[sub(run, ATTRIBUTION_AT, ATTRIBUTION_AT)] then
        runs[i] = replace_at(run, ATTRIBUTION_AT, ATTRIBUTION_AT, new)
        changed[machine] = true
      end
      return
    end
  end
end

-- A resolved run's entry with its label, attribution and peer median filled in; its line
-- joins the label's, and the runs of other machines it is evidence for are judged anew.
local function judge_run(item, id, entry)
  local code = byte(entry, CODE_AT)
  if code == B_RUNNING or code == B_NOT_COUNTED then return entry end
  -- the listener named the label (history.label_ref), or the run's start did
  local name, ref = item[LABEL], sub(entry, LABEL_FROM, LABEL_TO)
  if ref == NO_LABEL then return entry end
  local lab = load_label(ref, name)
  if not lab then return entry end
  local run_key = sub(entry, KEY_FROM, KEY_TO)
  for _, line in ipairs(lab.runs) do
    if find(line, run_key, P_KEY_FROM, true) == P_KEY_FROM then
      -- known already (the machine's history let it go): as judged then
      return replace_at(entry, ATTRIBUTION_AT, ATTRIBUTION_AT,
        sub(line, P_ATTRIBUTION, P_ATTRIBUTION))
    end
  end
  local time = tonumber(sub(entry, TIME_FROM, TIME_TO))
  local failing, attribution, duration = B_FAILING[code], NO_ATTRIBUTION, 0
  if failing then
    attribution = judge(lab, id, time)
    entry = replace_at(entry, ATTRIBUTION_AT, ATTRIBUTION_AT, attribution)
  elseif code == B_COMPLETED then
    local started = tonumber(sub(entry, STARTED_FROM, STARTED_TO))
    if started > 0 and time > started then duration = time - started end
    entry = replace_at(entry, MEDIAN_FROM, MEDIAN_TO,
      string.format('%010d', peer_median(lab, id, time)))
  end
  local line = sub(entry, TIME_FROM, TIME_TO) .. sub(entry, CODE_AT, CODE_AT) .. attribution
    .. string.format('%010d', duration) .. run_key .. id .. ' ' .. item[WORKER_TYPE]
  local runs = lab.runs
  local place = 1
  while runs[place] and runs[place] > line do place = place + 1 end
  table.insert(runs, place, line)
  while #runs > LABEL_RUNS do runs[#runs] = nil end
  changed_labels[ref] = true
  -- only a failure can make another failure "task", only a completion can make one "machine":
  -- the failures judged "N", and after a failure those judged "M" too
  local first, last = window(runs, time)
  for at = first, last do
    local other = runs[at]
    local other_attribution = byte(other, P_ATTRIBUTION)
    if B_FAILING[byte(other, P_CODE)] and (other_attribution == B_NO_ATTRIBUTION
          or (failing and other_attribution ~= B_TASK))
        and not line_of(other, id) then
      rejudge(lab, at, other)
    end
  end
  return entry
end

-- Each label changed is kept until its newest run leaves the window; the index of labels by
-- their newest failure (what /labels reads) drops those whose failures all left it.
local function save_labels()
  local index = prefix .. 'labels'
  local any = false
  for ref in pairs(changed_labels) do
    any = true
    local lab = labels[ref]
    local runs = lab.runs
    local key = prefix .. 'label:' .. ref
    local newest, newest_failure = tonumber(sub(runs[1], P_TIME_FROM, P_TIME_TO)), 0
    for _, line in ipairs(runs) do
      if B_FAILING[byte(line, P_CODE)] then
        newest_failure = tonumber(sub(line, P_TIME_FROM, P_TIME_TO))
        break
      end
    end
    local ttl = math.floor(newest + WINDOW_MS - now_ms)
    if ttl > 0 then
      -- the name joins the lines for the one concatenation: the value is built once
      table.insert(runs, 1, lab.name)
      redis.call('SET', key, table.concat(runs, '\n'), 'PX', ttl)
      table.remove(runs, 1)
    else
      redis.call('DEL', key)
    end
    if newest_failure > 0 and newest_failure + WINDOW_MS > now_ms then
      redis.call('ZADD', index, newest_failure, ref)
    else
      redis.call('ZREM', index, ref)
    end
  end
  if any then redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now_ms - WINDOW_MS)) end
end

local function record_worker(item)
  local id, state = item[ID], item[STATE]
  local rec, runs = load_machine(id)
  local entry = new_entry(item, rec, runs)
  if not entry then
    duplicates = duplicates + 1
    return
  end
  entry = judge_run(item, id, entry)
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

-- What the problem rules read with every machine, so no request decodes histories: the
-- outcomes; beside them, only once a run has a label, their attributions ("N", "M", "T",
-- one each) and the peer ratios (duration over peer median) of the newest completed runs.
local function note_outcomes(rec, runs)
  local outcomes, attributions, ratios, attributed, completed = {}, {}, {}, false, 0
  local n, judged = 0, peer.judged
  for _, run in ipairs(runs) do
    local run_code = sub(run, CODE_AT, CODE_AT)
    if run_code ~= RUNNING then
      n = n + 1
      outcomes[n] = run_code
      local attribution = sub(run, ATTRIBUTION_AT, ATTRIBUTION_AT)
      -- an entry written before labels has its reason here, and no peer median
      local labelled = STRENGTH[attribution]
      if not labelled then attribution = NO_ATTRIBUTION end
      if attribution ~= NO_ATTRIBUTION then attributed = true end
      attributions[n] = attribution
      if run_code == COMPLETED and completed < judged then
        completed = completed + 1
        -- most runs have no peer median: its zeros are told apart without a number made
        local median = labelled and sub(run, MEDIAN_FROM, MEDIAN_TO)
        if median and median ~= NO_MEDIAN then
          local started = tonumber(sub(run, STARTED_FROM, STARTED_TO))
          if started > 0 then
            local ratio = (tonumber(sub(run, TIME_FROM, TIME_TO)) - started) / tonumber(median)
            ratios[#ratios + 1] = math.floor(ratio * 1000 + 0.5) / 1000
          end
        end
      end
    end
  end
  rec.outcomes = table.concat(outcomes)
  rec.attributions = attributed and table.concat(attributions) or nil
  rec.peer_ratios = #ratios > 0 and ratios or nil
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
    local group, was = index.group(id, rec), groups_before[id]
    local before = group
    if not was then
      before = index.group(id, nil)
    elseif was[1] ~= rec.provisioner or was[2] ~= rec.worker_type then
      before = index.group(id, {provisioner = was[1], worker_type = was[2]})
    end
    index.place(id, before, group, raised[id])
    local since = rec.state == 'running' and rec.task_time or nil
    -- a machine that moved left its old group's running set in place()
    if (since or '') ~= running_before[id] or (since and group ~= before) then
      index.running(id, group, since)
    end
    index.unjudge(id)
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
save_labels()
save_machines()
trim_queues()
count()
note_version()
return {written, duplicates, ignored}
