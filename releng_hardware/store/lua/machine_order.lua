-- The machine order (docs/architecture.md, "Redis layout"): every machine of `machines` as a
-- member of one sorted set, score 0, so that ZRANGEBYLEX reads them in /machines' default order,
-- hostname then datacenter (fleet.sort_by_hostname). store.py puts this file before every script
-- that adds or removes a machine, and passes the order's key last in KEYS.
-- A member is <hostname> NUL <datacenter> NUL <machine id>: NUL sorts before every character
-- of a name, so members sort as (hostname, datacenter) pairs do; the id split as
-- identifiers.split_machine_id splits it. keys.order_member is this rule in Python.
local machine_order = KEYS[#KEYS]
local function order_member(id)
  local datacenter, hostname = string.match(id, '^(.*):([^:]*)$')
  if not datacenter then datacenter, hostname = '', id end
  return hostname .. ORDER_SEPARATOR .. datacenter .. ORDER_SEPARATOR .. id
end
-- Called where a machine first gets a lastseen.
local function add_to_order(id)
  redis.call('ZADD', machine_order, 0, order_member(id))
end
