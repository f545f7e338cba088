-- A history entry is one fixed-width string whose leading fields sort it: a greater entry
-- is a newer run. A history is its entries, newest first, joined by newlines: string work
-- only, no decoding per write.

-- A machine's record and history, read once per batch.
local function load_machine(id)
  local rec = batch.recs[id]
  if rec then return rec, batch.hists[id] end
  local raw = redis.call('HGET', records, id)
  if raw then
    rec = cjson.decode(raw)
    -- written before the history existed: its run set still knows older redeliveries
    if not rec.outcomes then rec.legacy_runs = 1 end
  else
    rec = empty_record()
  end
  batch.recs[id] = rec
  -- what its group is made of: the group itself is made only if it changes
  batch.groups_before[id] = raw and {rec.provisioner, rec.worker_type} or false
  batch.running_before[id] = rec.state == 'running' and rec.task_time or ''
  local runs = {}
  for run in string.gmatch(redis.call('HGET', history, id) or '', '[^\n]+') do
    runs[#runs + 1] = run
  end
  batch.hists[id] = runs
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
  if rec.legacy_runs and redis.call('ZSCORE', prefix .. KEY.legacy_runs .. item[ID],
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
