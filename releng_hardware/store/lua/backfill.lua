-- Backfill from Taskcluster's worker list: for each [id, lastseen, firstseen or '', provisioner,
-- worker type], raise lastseen (never lower it) and fill in the record; a machine the listener
-- never recorded a run of says it is known from Taskcluster only.
-- KEYS: machines, machine_records, version, the machine order. ARGV: the items (JSON), key prefix.
local machines, records, version = KEYS[1], KEYS[2], KEYS[3]
local index = machine_index(ARGV[2], machines)
local written, kept = 0, 0
for _, item in ipairs(cjson.decode(ARGV[1])) do
  local id, seen, first, provisioner, worker_type = item[1], item[2], item[3], item[4], item[5]
  local current = redis.call('HGET', machines, id)
  if (not current) or seen > current then
    redis.call('HSET', machines, id, seen)
    if not current then add_to_order(id) end
    local raw = redis.call('HGET', records, id)
    local rec
    if raw then rec = cjson.decode(raw) else rec = {completed = 0, failed = 0, exception = 0} end
    -- the group it was in: none when new, its record's (or none) before this write
    local before = current and index.group(id, raw and rec or nil) or nil
    if first ~= '' and ((not rec.firstseen) or first < rec.firstseen) then rec.firstseen = first end
    if not rec.worker_type then rec.provisioner, rec.worker_type = provisioner, worker_type end
    if not rec.task_id then rec.source = 'taskcluster' end
    redis.call('HSET', records, id, cjson.encode(rec))
    index.place(id, before, index.group(id, rec), seen)
    index.unjudge(id)
    written = written + 1
  else
    kept = kept + 1
  end
end
if written > 0 then redis.call('INCR', version) end
return {written, kept}
