-- Tasks waiting and tasks claimed, per queue.

-- A started or resolved run is claimed for good, so a late task-pending cannot bring it back.
local function claim(item)
  local deadline = item[DEADLINE]
  if deadline == '' then return end
  local queue = item[PROVISIONER] .. '/' .. item[WORKER_TYPE]
  local task_run = item[TASK_ID] .. '/' .. item[RUN_ID]
  redis.call('ZREM', prefix .. KEY.pending .. queue, task_run)
  redis.call('ZADD', prefix .. KEY.claimed .. queue, deadline, task_run)
  batch.touched[queue] = batch.touched[queue] or 'claimed'
end

local function record_pending(item)
  local queue, task_run, deadline = item[QUEUE], item[TASK_RUN], item[PENDING_DEADLINE]
  if tonumber(deadline) > now and not redis.call('ZSCORE', prefix .. KEY.claimed .. queue, task_run) then
    if redis.call('ZADD', prefix .. KEY.pending .. queue, deadline, task_run) == 1 then
      batch.written = batch.written + 1
    else
      batch.duplicates = batch.duplicates + 1
    end
    batch.touched[queue] = 'pending'
  else
    -- already started, resolved or past its deadline: a late or stale task-pending
    batch.ignored = batch.ignored + 1
  end
end

-- Tasks past their deadline leave the pending and claimed sets of the queues touched.
local function trim_queues()
  for queue, why in pairs(batch.touched) do
    if why == 'pending' then redis.call('SADD', prefix .. KEY.pending_queues, queue) end
    redis.call('ZREMRANGEBYSCORE', prefix .. KEY.pending .. queue, '-inf', now)
    redis.call('ZREMRANGEBYSCORE', prefix .. KEY.claimed .. queue, '-inf', now)
  end
end
