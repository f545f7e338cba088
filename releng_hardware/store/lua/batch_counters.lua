-- The listener's counters and the data version.

local function count()
  redis.call('HINCRBY', stats, 'processed', ARGV[4])
  redis.call('HINCRBY', stats, 'skipped', ARGV[5])
  redis.call('HINCRBY', stats, 'malformed', ARGV[6])
  redis.call('HINCRBY', stats, 'written', batch.written)
  redis.call('HINCRBY', stats, 'duplicate', batch.duplicates)
  redis.call('HINCRBY', stats, 'ignored', batch.ignored)
  redis.call('HSET', stats, 'last_message_at', ARGV[7])
end

-- The version tells the web its ETags are stale; newest_event_at only moves forward.
local function note_version()
  if batch.written > 0 then redis.call('INCR', prefix .. KEY.version) end
  if batch.newest ~= '' then
    local known = redis.call('HGET', stats, 'newest_event_at')
    if (not known) or batch.newest > known then redis.call('HSET', stats, 'newest_event_at', batch.newest) end
  end
end
