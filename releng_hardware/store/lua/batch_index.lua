-- The machine index's upkeep (machine_index.lua), and each changed machine written back.
local function save_machines()
  for id in pairs(batch.changed) do
    local rec, runs = batch.recs[id], batch.hists[id]
    note_outcomes(rec, runs)
    trim_legacy_runs(id, rec, runs)
    redis.call('HSET', records, id, cjson.encode(rec))
    redis.call('HSET', history, id, table.concat(runs, '\n'))
    local group, was = index.group(id, rec), batch.groups_before[id]
    local before = group
    if not was then
      before = index.group(id, nil)
    elseif was[1] ~= rec.provisioner or was[2] ~= rec.worker_type then
      before = index.group(id, {provisioner = was[1], worker_type = was[2]})
    end
    index.place(id, before, group, batch.raised[id])
    local since = rec.state == 'running' and rec.task_time or nil
    -- a machine that moved left its old group's running set in place()
    if (since or '') ~= batch.running_before[id] or (since and group ~= before) then
      index.running(id, group, since)
    end
    index.unjudge(id)
  end
end
