-- The machine index (docs/architecture.md, "Redis layout"): what /summary and the dashboard
-- count without reading every machine. store.py puts this file before every script that adds,
-- moves or removes a machine, or writes its lastseen or record; each keeps the index in the same
-- atomic write.
--   index:groups            the groups that have machines (a set)
--   index:seen:<group>      the group's machines by lastseen (sorted set, epoch microseconds)
--   index:running:<group>   its machines whose newest run is running, by that run's start
--   index:attention         every machine with a problem of the record's (problems.RECORD_PROBLEMS)
--                           by its lastseen when last judged
--   index:judged            machine id -> its judgement: "<group>\n<codes, space-separated>\n<1 if
--                           it needs attention, else 0>" (views.machine_index.Judgement.encoded)
--   index:counts            "<group>\n<code>" -> how many judged machines of the group have it
--   index:generation        the counter every write's generation comes from
--   index:unjudged          machine id -> a generation, new at every write of the machine: its
--                           judgement (if any) is out of date; the web judges it (judge.lua)
--   index:state             the build's progress (build_machine_index.lua)
--   index:views             machine id -> its answer in /machines as judged, without what time
--                           changes (views.machine_index.encode_view), stored with its judgement
-- A group is "<datacenter>\t<provisioner>\t<worker type>" (keys.group_key is this rule in
-- Python, and GROUP_SEPARATOR its); the judging itself is Python's (problems.py), one definition of every rule.

-- Epoch microseconds of a lastseen-format time (times.LASTSEEN_FORMAT); 0 when unreadable, a
-- hand-made value: it counts as the oldest. keys.lastseen_score is this rule in Python.
local function lastseen_score(text)
  local y, mo, d, h, mi, s, fraction = string.match(text or '',
    '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.(%d%d%d%d%d%d)$')
  if not y then return 0 end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from the civil date (proleptic Gregorian), as datetime counts them
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local year_of_era = y - era * 400
  local day_of_year = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local day_of_era = year_of_era * 365 + math.floor(year_of_era / 4)
    - math.floor(year_of_era / 100) + day_of_year
  local days = era * 146097 + day_of_era - 719468
  local micro = tonumber(fraction)
  return (((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60 + tonumber(s)) * 1000000 + micro
end

local function machine_index(prefix, machines)
  local index = {}
  local groups, attention = prefix .. KEY.index_groups, prefix .. KEY.index_attention
  local judged, counts, unjudged = prefix .. KEY.index_judged, prefix .. KEY.index_counts,
    prefix .. KEY.index_unjudged
  local views = prefix .. KEY.index_views
  local function seen_key(group) return prefix .. KEY.index_seen .. group end
  local function running_key(group) return prefix .. KEY.index_running .. group end
  local function text(value) return type(value) == 'string' and value or '' end
  -- the groups this script call added to index:groups (and never emptied since)
  local grouped = {}
  -- A lastseen-format time as a sorted set's score.
  local function score_of(text) return string.format('%.0f', lastseen_score(text)) end
  -- The machine leaves its group's orders; the group leaves index:groups once empty.
  local function leave(id, group)
    redis.call('ZREM', seen_key(group), id)
    redis.call('ZREM', running_key(group), id)
    if redis.call('ZCARD', seen_key(group)) == 0 then
      redis.call('SREM', groups, group)
      grouped[group] = nil
    end
  end

  -- The group of a machine with record `rec` (a decoded record, or nil for none).
  function index.group(id, rec)
    local datacenter = string.match(id, '^(.*):[^:]*$') or ''
    if not rec then return datacenter .. GROUP_SEPARATOR .. GROUP_SEPARATOR end
    return datacenter .. GROUP_SEPARATOR .. text(rec.provisioner) .. GROUP_SEPARATOR
      .. text(rec.worker_type)
  end

  -- The machine in its group's order by lastseen: moved there from `old` (nil: none) when its
  -- group changed, its score raised to `raised` (its new lastseen, nil when unchanged), whose
  -- score the caller may know already (`raised_score`, epoch microseconds as a string).
  -- index:attention keeps the score of the lastseen judged: the machine is unjudged now, and the
  -- reader counts it by its lastseen (fleet_figures returns both).
  function index.place(id, old, new, raised, raised_score)
    if old == new and not raised then return end
    local score = raised_score or score_of(raised or redis.call('HGET', machines, id))
    if old ~= new then
      if old then leave(id, old) end
      if not grouped[new] then
        redis.call('SADD', groups, new)
        grouped[new] = true
      end
    end
    redis.call('ZADD', seen_key(new), score, id)
  end

  -- Whether the machine's newest run is running, since `since` (a lastseen-format time; nil: not).
  function index.running(id, group, since)
    if since then
      redis.call('ZADD', running_key(group), score_of(since), id)
    else
      redis.call('ZREM', running_key(group), id)
    end
  end

  -- Its judgement is out of date. The generation comes from one counter, never from the
  -- machine's own entry: that is deleted once judged, and a count restarting at 1 would let a
  -- slow reader's judgement of an older record pass for one of the newer.
  -- One number per script call is enough: a later write of the machine runs in a later call.
  local generation = nil
  function index.unjudge(id)
    generation = generation or redis.call('INCR', prefix .. KEY.index_generation)
    redis.call('HSET', unjudged, id, generation)
  end

  -- Add `by` to the counts of the codes of a stored judgement.
  function index.count(judgement, by)
    local group, codes = string.match(judgement, '^([^\n]*)\n([^\n]*)')
    for code in string.gmatch(codes or '', '%S+') do
      local field = group .. '\n' .. code
      if redis.call('HINCRBY', counts, field, by) == 0 then redis.call('HDEL', counts, field) end
    end
  end

  -- Replace the machine's judgement by `judgement` (encoded as index:judged holds it) and its
  -- view by `view` (a string; anything else: none, so no view of an older record stays).
  function index.judge(id, judgement, view)
    local old = redis.call('HGET', judged, id)
    if old then index.count(old, -1) end
    index.count(judgement, 1)
    redis.call('HSET', judged, id, judgement)
    if type(view) == 'string' then
      redis.call('HSET', views, id, view)
    else
      redis.call('HDEL', views, id)
    end
    if string.sub(judgement, -1) == '1' then
      redis.call('ZADD', attention, score_of(redis.call('HGET', machines, id)), id)
    else
      redis.call('ZREM', attention, id)
    end
  end

  -- Every group's orders and index:groups emptied, for a build that places every machine again:
  -- no group stays that no machine is in anymore (a group's rule or a record changed unseen).
  -- O(machines) once per build: DEL frees a sorted set member by member.
  function index.clear_groups()
    for _, group in ipairs(redis.call('SMEMBERS', groups)) do
      redis.call('DEL', seen_key(group), running_key(group))
    end
    redis.call('DEL', groups)
    grouped = {}
  end

  -- The machine leaves the index (retention removed it); `rec` is its record before.
  function index.remove(id, rec)
    leave(id, index.group(id, rec))
    redis.call('ZREM', attention, id)
    local old = redis.call('HGET', judged, id)
    if old then index.count(old, -1) end
    redis.call('HDEL', judged, id)
    redis.call('HDEL', views, id)
    redis.call('HDEL', unjudged, id)
  end

  return index
end
