-- Backfill from Taskcluster's worker list: for each [id, lastseen, firstseen or '', provisioner,
-- worker type], raise lastseen (never lower it) and fill in the record; a machine the listener
-- never recorded a run of says it is known from Taskcluster only.
-- KEYS: machines, machine_records, version, the machine order. ARGV: the items (JSON), key prefix.
local machines, records, version = KEYS[1], KEYS[2], KEYS[3]
local index = machine_index(ARGV[2], machines)
local written, kept = 0, 0
for _, item in ipairs(cjson.decode(ARGV[1])) do
  local id, seen, first, provisioner, worker_type = item[1], item[2], item[3], item[4], item[5]
  local current, raises = raise_lastseen(machines, id, seen)
  if raises then
    local raw = redis.call('HGET', records, id)
    local rec = raw and cjson.decode(raw) or empty_record()
    -- the group it was in: none when new, its record's (or none) before this write
    local before = current and index.group(id, raw and rec or nil) or nil
    lower_firstseen(rec, first)
    if not rec.worker_type then rec.provisioner, rec.worker_type = provisioner, worker_type end
    if not rec.task_id then rec.source = SOURCE_TASKCLUSTER end
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
