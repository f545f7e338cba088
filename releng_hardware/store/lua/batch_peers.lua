-- Peers. Per label one string key: the label, then its newest resolved runs (LABEL_RUNS at
-- most), newest first, one fixed-width line each (peers.PEER_FIELDS). A run is judged by the
-- lines of other machines within WINDOW_MS of it; the definition is peers.peer_counts'.
--
-- This runs for every labelled resolution, over the lines of its label: a line is read in
-- place, never cut up. Its code and attribution are compared as bytes and its machine by a
-- plain find at the machine's place. The time leads the line at a fixed width, so string order
-- is time order: the lines within the window of a time, newest first like all of them, are
-- the ones between two bounds, found from each end (mostly at once: most are within).
local byte, sub, find = string.byte, string.sub, string.find
local B_COMPLETED, B_RUNNING, B_NOT_COUNTED = byte(COMPLETED), byte(RUNNING), byte(NOT_COUNTED)
local B_NO_ATTRIBUTION, B_TASK, B_SPACE = byte(NO_ATTRIBUTION), byte(TASK_ATTRIBUTION), byte(' ')
local B_FAILING = {}
for code in pairs(FAILING) do B_FAILING[byte(code)] = true end
if P_TIME_FROM ~= 1 then error('a label run line must begin with its time') end
local P_TIME_WIDTH = P_TIME_TO - P_TIME_FROM + 1
local P_TIME_FORMAT = '%0' .. P_TIME_WIDTH .. 'd'
local P_TIME_LIMIT = 10 ^ P_TIME_WIDTH
local NO_MEDIAN = string.rep('0', MEDIAN_TO - MEDIAN_FROM + 1)
-- a peer median as the history entry holds it, a duration as a label run line does
local MEDIAN_FORMAT = '%0' .. (MEDIAN_TO - MEDIAN_FROM + 1) .. 'd'
local DURATION_FORMAT = '%0' .. (P_DURATION_TO - P_DURATION_FROM + 1) .. 'd'

local function replace_at(text, from, to, value)
  return sub(text, 1, from - 1) .. value .. sub(text, to + 1)
end

local function line_machine(line)
  return string.match(line, '^(%S+)', P_MACHINE)
end

-- Whether a line is a run of machine `id` (what line_machine(line) == id says, made for none).
local function line_of(line, id)
  if find(line, id, P_MACHINE, true) ~= P_MACHINE then return false end
  local after = byte(line, P_MACHINE + #id)
  return after == nil or after == B_SPACE
end

-- The first and last place of the lines (newest first) within WINDOW_MS of `time`: a line of
-- a time within is >= low and < high (no high: no time of the line's width is past it).
local function window(runs, time)
  local low, high = time - WINDOW_MS, time + WINDOW_MS + 1
  low = string.format(P_TIME_FORMAT, low > 0 and low or 0)
  local first, last = 1, #runs
  if high < P_TIME_LIMIT then
    high = string.format(P_TIME_FORMAT, high)
    while first <= last and runs[first] >= high do first = first + 1 end
  end
  while last >= first and runs[last] < low do last = last - 1 end
  return first, last
end

-- A label's runs, read once per batch; nil when neither stored nor named by the item.
local function load_label(ref, name)
  local lab = batch.labels[ref]
  if lab then return lab end
  local raw = redis.call('GET', prefix .. KEY.label .. ref)
  local lines = {}
  if raw then
    -- a plain find per line: several times cheaper than a pattern
    local n, at, size = 0, 1, #raw
    while at <= size do
      local stop = find(raw, '\n', at, true) or size + 1
      if stop > at then
        n = n + 1
        lines[n] = sub(raw, at, stop - 1)
      end
      at = stop + 1
    end
    name = table.remove(lines, 1)
  elseif name == '' then
    return nil
  end
  lab = {name = name, runs = lines}
  batch.labels[ref] = lab
  return lab
end

-- TASK_ATTRIBUTION when PEER_FAILURES other machines failed a peer run, else MACHINE_ATTRIBUTION
-- when one completed one.
local function judge(lab, id, time)
  local runs = lab.runs
  local failed, completed, failures = {}, false, 0
  local first, last = window(runs, time)
  for at = first, last do
    local line = runs[at]
    local code = byte(line, P_CODE)
    if (B_FAILING[code] or code == B_COMPLETED) and not line_of(line, id) then
      if code == B_COMPLETED then
        completed = true
      else
        local machine = line_machine(line)
        if not failed[machine] then failed[machine], failures = true, failures + 1 end
      end
    end
  end
  if failures >= PEER_FAILURES then return TASK_ATTRIBUTION end
  return completed and MACHINE_ATTRIBUTION or NO_ATTRIBUTION
end

-- The median duration of the completed peer runs, 0 with fewer than 3.
local function peer_median(lab, id, time)
  local runs = lab.runs
  local durations, n = {}, 0
  local first, last = window(runs, time)
  for at = first, last do
    local line = runs[at]
    if byte(line, P_CODE) == B_COMPLETED and not line_of(line, id) then
      local duration = tonumber(sub(line, P_DURATION_FROM, P_DURATION_TO))
      if duration > 0 then n = n + 1 durations[n] = duration end
    end
  end
  if n < 3 then return 0 end
  table.sort(durations)
  if n % 2 == 1 then return durations[(n + 1) / 2] end
  return math.floor((durations[n / 2] + durations[n / 2 + 1]) / 2)
end

-- Another machine's run judged anew: its label line and its history entry.
local function rejudge(lab, at, line)
  local old = sub(line, P_ATTRIBUTION, P_ATTRIBUTION)
  local machine = line_machine(line)
  local time = tonumber(sub(line, P_TIME_FROM, P_TIME_TO))
  local new = judge(lab, machine, time)
  if STRENGTH[new] <= STRENGTH[old] then return end
  lab.runs[at] = replace_at(line, P_ATTRIBUTION, P_ATTRIBUTION, new)
  local run_key = sub(line, P_KEY_FROM, P_KEY_TO)
  local rec, runs = load_machine(machine)
  for i, run in ipairs(runs) do
    if find(run, run_key, KEY_FROM, true) == KEY_FROM then
      if STRENGTH[sub(run, ATTRIBUTION_AT, ATTRIBUTION_AT)] then
        runs[i] = replace_at(run, ATTRIBUTION_AT, ATTRIBUTION_AT, new)
        batch.changed[machine] = true
      end
      return
    end
  end
end

-- A resolved run's entry with its label, attribution and peer median filled in; its line
-- joins the label's, and the runs of other machines it is evidence for are judged anew.
local function judge_run(item, id, entry)
  local code = byte(entry, CODE_AT)
  if code == B_RUNNING or code == B_NOT_COUNTED then return entry end
  -- the listener named the label (history.label_ref), or the run's start did
  local name, ref = item[LABEL], sub(entry, LABEL_FROM, LABEL_TO)
  if ref == NO_LABEL then return entry end
  local lab = load_label(ref, name)
  if not lab then return entry end
  local run_key = sub(entry, KEY_FROM, KEY_TO)
  for _, line in ipairs(lab.runs) do
    if find(line, run_key, P_KEY_FROM, true) == P_KEY_FROM then
      -- known already (the machine's history let it go): as judged then
      return replace_at(entry, ATTRIBUTION_AT, ATTRIBUTION_AT,
        sub(line, P_ATTRIBUTION, P_ATTRIBUTION))
    end
  end
  local time = tonumber(sub(entry, TIME_FROM, TIME_TO))
  local failing, attribution, duration = B_FAILING[code], NO_ATTRIBUTION, 0
  if failing then
    attribution = judge(lab, id, time)
    entry = replace_at(entry, ATTRIBUTION_AT, ATTRIBUTION_AT, attribution)
  elseif code == B_COMPLETED then
    local started = tonumber(sub(entry, STARTED_FROM, STARTED_TO))
    if started > 0 and time > started then duration = time - started end
    entry = replace_at(entry, MEDIAN_FROM, MEDIAN_TO,
      string.format(MEDIAN_FORMAT, peer_median(lab, id, time)))
  end
  local line = sub(entry, TIME_FROM, TIME_TO) .. sub(entry, CODE_AT, CODE_AT) .. attribution
    .. string.format(DURATION_FORMAT, duration) .. run_key .. id .. ' ' .. item[WORKER_TYPE]
  local runs = lab.runs
  local place = 1
  while runs[place] and runs[place] > line do place = place + 1 end
  table.insert(runs, place, line)
  while #runs > LABEL_RUNS do runs[#runs] = nil end
  batch.changed_labels[ref] = true
  -- only a failure can make another failure "task", only a completion can make one "machine":
  -- the failures judged "N", and after a failure those judged "M" too
  local first, last = window(runs, time)
  for at = first, last do
    local other = runs[at]
    local other_attribution = byte(other, P_ATTRIBUTION)
    if B_FAILING[byte(other, P_CODE)] and (other_attribution == B_NO_ATTRIBUTION
          or (failing and other_attribution ~= B_TASK))
        and not line_of(other, id) then
      rejudge(lab, at, other)
    end
  end
  return entry
end

-- Each label changed is kept until its newest run leaves the window; the index of labels by
-- their newest failure (what /labels reads) drops those whose failures all left it.
local function save_labels()
  local index = prefix .. KEY.labels
  local any = false
  for ref in pairs(batch.changed_labels) do
    any = true
    local lab = batch.labels[ref]
    local runs = lab.runs
    local key = prefix .. KEY.label .. ref
    local newest_run, newest_failure = tonumber(sub(runs[1], P_TIME_FROM, P_TIME_TO)), 0
    for _, line in ipairs(runs) do
      if B_FAILING[byte(line, P_CODE)] then
        newest_failure = tonumber(sub(line, P_TIME_FROM, P_TIME_TO))
        break
      end
    end
    local ttl = math.floor(newest_run + WINDOW_MS - now_ms)
    if ttl > 0 then
      -- the name joins the lines for the one concatenation: the value is built once
      table.insert(runs, 1, lab.name)
      redis.call('SET', key, table.concat(runs, '\n'), 'PX', ttl)
      table.remove(runs, 1)
    else
      redis.call('DEL', key)
    end
    if newest_failure > 0 and newest_failure + WINDOW_MS > now_ms then
      redis.call('ZADD', index, newest_failure, ref)
    else
      redis.call('ZREM', index, ref)
    end
  end
  if any then redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now_ms - WINDOW_MS)) end
end
