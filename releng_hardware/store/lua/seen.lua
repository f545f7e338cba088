-- What every script that writes a machine's lastseen (record_batch, preload, backfill) keeps by
-- one rule: lastseen only moves forward, firstseen only back, and a machine's first record is
-- empty_record(). store.scripts puts this part after machine_order.lua (add_to_order).

-- A machine's record before anything was recorded of it.
local function empty_record()
  return {completed = 0, failed = 0, exception = 0}
end

-- Raise the machine's lastseen in `machines` to `seen`, never lower it; a machine given its
-- first lastseen joins the machine order. Returns the lastseen it had (nil: none) and whether
-- `seen` raised it.
local function raise_lastseen(machines, id, seen)
  local current = redis.call('HGET', machines, id)
  if current and seen <= current then return current, false end
  redis.call('HSET', machines, id, seen)
  if not current then add_to_order(id) end
  return current, true
end

-- Lower the record's firstseen to `first` ('' or nil: not known).
local function lower_firstseen(rec, first)
  if first and first ~= '' and ((not rec.firstseen) or first < rec.firstseen) then
    rec.firstseen = first
  end
end
