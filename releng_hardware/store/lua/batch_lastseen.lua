-- lastseen only moves forward, firstseen only back (seen.lua); the record's last task is
-- its newest event's.
local function note_seen(id, rec, seen, first)
  local _, raises = raise_lastseen(machines, id, seen)
  if raises then batch.raised[id] = seen end
  lower_firstseen(rec, first)
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
