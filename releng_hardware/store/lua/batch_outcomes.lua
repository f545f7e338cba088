-- What the problem rules read with every machine, so no request decodes histories: the
-- outcomes; beside them, only once a run has a label, their attributions ("N", "M", "T",
-- one each) and the peer ratios (duration over peer median) of the newest completed runs.
local function note_outcomes(rec, runs)
  local outcomes, attributions, ratios, attributed, completed = {}, {}, {}, false, 0
  local n, judged = 0, peer.judged
  for _, run in ipairs(runs) do
    local run_code = sub(run, CODE_AT, CODE_AT)
    if run_code ~= RUNNING then
      n = n + 1
      outcomes[n] = run_code
      local attribution = sub(run, ATTRIBUTION_AT, ATTRIBUTION_AT)
      -- an entry written before labels has its reason here, and no peer median
      local labelled = STRENGTH[attribution]
      if not labelled then attribution = NO_ATTRIBUTION end
      if attribution ~= NO_ATTRIBUTION then attributed = true end
      attributions[n] = attribution
      if run_code == COMPLETED and completed < judged then
        completed = completed + 1
        -- most runs have no peer median: its zeros are told apart without a number made
        local median = labelled and sub(run, MEDIAN_FROM, MEDIAN_TO)
        if median and median ~= NO_MEDIAN then
          local started = tonumber(sub(run, STARTED_FROM, STARTED_TO))
          if started > 0 then
            local ratio = (tonumber(sub(run, TIME_FROM, TIME_TO)) - started) / tonumber(median)
            ratios[#ratios + 1] = math.floor(ratio * 1000 + 0.5) / 1000
          end
        end
      end
    end
  end
  rec.outcomes = table.concat(outcomes)
  rec.attributions = attributed and table.concat(attributions) or nil
  rec.peer_ratios = #ratios > 0 and ratios or nil
end

-- A full history recognises every redelivery older than its oldest run: the run set of
-- the version before the history is needed no further back.
local function trim_legacy_runs(id, rec, runs)
  if not (rec.legacy_runs and #runs >= keep) then return end
  local oldest = tonumber(string.sub(runs[#runs], TIME_FROM, TIME_TO)) / 1000
  local legacy = prefix .. KEY.legacy_runs .. id
  redis.call('ZREMRANGEBYSCORE', legacy, '-inf', '(' .. oldest)
  if redis.call('EXISTS', legacy) == 0 then rec.legacy_runs = nil end
end
