-- What /summary counts, read from the machine index (machine_index.lua) at one moment: per
-- group its machines, those not seen since a cutoff, those seen since another, those running
-- since before a third; the judged counts; and the unjudged machines with their records and
-- their judgements as stored, for the caller to judge and count instead.
-- KEYS: machine_records, machines. ARGV: key prefix, stale cutoff, seen-within cutoff, hung cutoff (epoch
-- microseconds), the most unjudged machines to return, the thresholds' fingerprint.
-- Returns {-2} while the index is not built for these thresholds, {-1} when more machines than
-- that are unjudged; else {0, {id, generation, record, judgement, lastseen, its score in
-- index:attention or nil, ...}, {group, machines, stale, seen within, hung, ...},
-- {"<group>\n<code>", count, ...}, {machines in index:attention, of them stale, machines hung
-- neither in index:attention nor stale}}.
local records, machines, prefix = KEYS[1], KEYS[2], ARGV[1]
local stale_cutoff, seen_cutoff, hung_cutoff = ARGV[2], ARGV[3], ARGV[4]
if redis.call('GET', prefix .. KEY.index_state) ~= 'done:' .. ARGV[6] then return {-2} end
local unjudged_key = prefix .. KEY.index_unjudged
if redis.call('HLEN', unjudged_key) > tonumber(ARGV[5]) then return {-1} end
local judged, attention = prefix .. KEY.index_judged, prefix .. KEY.index_attention
local unjudged = {}
local entries = redis.call('HGETALL', unjudged_key)
for i = 1, #entries, 2 do
  local id = entries[i]
  unjudged[#unjudged + 1] = id
  unjudged[#unjudged + 1] = entries[i + 1]
  unjudged[#unjudged + 1] = redis.call('HGET', records, id)
  unjudged[#unjudged + 1] = redis.call('HGET', judged, id)
  unjudged[#unjudged + 1] = redis.call('HGET', machines, id)
  unjudged[#unjudged + 1] = redis.call('ZSCORE', attention, id)
end
-- the machines hung that neither their judgement nor staleness puts in need of attention
local groups, hung_only = {}, 0
for _, group in ipairs(redis.call('SMEMBERS', prefix .. KEY.index_groups)) do
  local seen = prefix .. KEY.index_seen .. group
  local running = prefix .. KEY.index_running .. group
  local hung = redis.call('ZRANGEBYSCORE', running, '-inf', '(' .. hung_cutoff)
  for _, id in ipairs(hung) do
    if not redis.call('ZSCORE', attention, id)
        and tonumber(redis.call('ZSCORE', seen, id) or 0) > tonumber(stale_cutoff) then
      hung_only = hung_only + 1
    end
  end
  groups[#groups + 1] = group
  groups[#groups + 1] = redis.call('ZCARD', seen)
  groups[#groups + 1] = redis.call('ZCOUNT', seen, '-inf', stale_cutoff)
  groups[#groups + 1] = redis.call('ZCOUNT', seen, seen_cutoff, '+inf')
  groups[#groups + 1] = #hung
end
return {0, unjudged, groups, redis.call('HGETALL', prefix .. KEY.index_counts),
  {redis.call('ZCARD', attention), redis.call('ZCOUNT', attention, '-inf', stale_cutoff), hung_only}}
