-- Store the judgements the web made of unjudged machines (machine_index.lua), each only if the
-- machine was not written since its record was read: the generation read with it is still the
-- one in index:unjudged. Several web processes may judge the same machine: the first write
-- wins, the others find the generation gone and change nothing.
-- KEYS: machines. ARGV: key prefix, the judgements (JSON): [[id, generation, judgement, view],
-- ...]; without a view (or null) the machine's stored view is removed.
-- Returns how many were stored.
local index = machine_index(ARGV[1], KEYS[1])
local unjudged = ARGV[1] .. KEY.index_unjudged
local stored = 0
for _, item in ipairs(cjson.decode(ARGV[2])) do
  local id, generation, judgement, view = item[1], item[2], item[3], item[4]
  if redis.call('HGET', unjudged, id) == generation then
    index.judge(id, judgement, view)
    redis.call('HDEL', unjudged, id)
    stored = stored + 1
  end
end
return stored
