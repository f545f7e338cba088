-- A build made in bounded steps (build_machine_index.lua, build_machine_order.lua) keeps its
-- progress in one key: 'done:<version>' once complete, '<version>:<HSCAN cursor>' midway. A
-- build for another version (other code, other thresholds) starts over from its first step.

-- The cursor to scan from, or nil when the build of `version` is complete; on a build's first
-- step `first_step` runs (to empty what another version built).
local function build_cursor(state, version, first_step)
  local progress = redis.call('GET', state)
  if progress == 'done:' .. version then return nil end
  if progress and string.sub(progress, 1, #version + 1) == version .. ':' then
    return string.sub(progress, #version + 2)
  end
  first_step()
  return '0'
end

-- Record a step that scanned up to `next_cursor`; returns 1 once the build is complete, else 0.
local function build_advance(state, version, next_cursor)
  if next_cursor == '0' then
    redis.call('SET', state, 'done:' .. version)
    return 1
  end
  redis.call('SET', state, version .. ':' .. next_cursor)
  return 0
end
