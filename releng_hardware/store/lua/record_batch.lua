-- The batch itself, item by item (batch_decode.lua says what it takes and returns).
local function record_worker(item)
  local id, state = item[ID], item[STATE]
  local rec, runs = load_machine(id)
  local entry = new_entry(item, rec, runs)
  if not entry then
    batch.duplicates = batch.duplicates + 1
    return
  end
  entry = judge_run(item, id, entry)
  batch.written = batch.written + 1
  batch.changed[id] = true
  rec.source = nil  -- seen by the listener now, not only by a backfill
  insert_run(runs, entry)
  local seen = item[SEEN]
  note_seen(id, rec, seen, item[FIRST])
  note_last_task(rec, item)
  if state ~= 'running' then rec[state] = (rec[state] or 0) + 1 end
  if seen > batch.newest then batch.newest = seen end
  claim(item)
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
return {batch.written, batch.duplicates, batch.ignored}
