-- The tasks waiting per queue, as Store.pending_counts counts them: {queue, count, ...} for every
-- queue of the set `queues`, counting in <pending_prefix><queue> the tasks whose deadline is
-- after `deadline_after` (ZCOUNT's lower bound, '(<now, epoch seconds>'). store.py puts this
-- file before the read scripts that answer with the work waiting.
local function pending_counts(queues, pending_prefix, deadline_after)
  local counts = {}
  for _, queue in ipairs(redis.call('SMEMBERS', queues)) do
    counts[#counts + 1] = queue
    counts[#counts + 1] = redis.call('ZCOUNT', pending_prefix .. queue, deadline_after, '+inf')
  end
  return counts
end
