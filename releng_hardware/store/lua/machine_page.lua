-- A page of the machine order: up to `count` members after a place, and what the views need of
-- each of those machines (never of the others).
-- KEYS: machine order, its build state, machines, machine_records, quarantine, inventory.
-- ARGV: 1 where to start, a ZRANGEBYLEX bound ('-' or '+' for an end, '(' .. member after one),
--       2 count, 3 '1' to go backwards (ZREVRANGEBYLEX), 4 the digest of the code that makes
--       the order's members (store.index.ORDER_DIGEST).
-- Returns {-1} while the order is not complete for that digest (store.Store builds it and asks
-- again), else
-- {1 when the order goes on past these, 1 when an inventory is loaded, then per member:
--  member, lastseen, record, quarantine, 1 when in the inventory} (false where none).
local order, state, machines, records, quarantine, inventory =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('GET', state) ~= 'done:' .. ARGV[4] then return {-1} end
local start, count = ARGV[1], tonumber(ARGV[2])
local members
if ARGV[3] == '1' then
  members = redis.call('ZREVRANGEBYLEX', order, start, '-', 'LIMIT', 0, count + 1)
else
  members = redis.call('ZRANGEBYLEX', order, start, '+', 'LIMIT', 0, count + 1)
end
local more = 0
if #members > count then
  more = 1
  members[#members] = nil
end
local reply = {more, redis.call('EXISTS', inventory)}
if #members == 0 then return reply end
local ids = {}
for i, member in ipairs(members) do
  -- the id follows the member's second separator (plain finds: no pattern holds a NUL in Lua 5.1)
  ids[i] = string.sub(member, string.find(member, ORDER_SEPARATOR,
    string.find(member, ORDER_SEPARATOR, 1, true) + 1, true) + 1)
end
local seen = redis.call('HMGET', machines, unpack(ids))
local recs = redis.call('HMGET', records, unpack(ids))
local quarantines = redis.call('HMGET', quarantine, unpack(ids))
local listed = redis.call('HMGET', inventory, unpack(ids))
for i, member in ipairs(members) do
  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] = member, seen[i], recs[i], quarantines[i]
  reply[n + 5] = listed[i] and 1 or 0
end
return reply
