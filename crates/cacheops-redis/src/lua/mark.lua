-- Mark: begin or renew a write lease (protocol.rs `Backend::mark`).
-- KEYS: seq, then per table: table key, schemes key, writers key.
-- ARGV: writer, lease_ms, then the tables (see parse_tables in common.lua).
-- Returns the number of keys marked.
local writer = ARGV[1]
local lease = tonumber(ARGV[2])
local tables = parse_tables(3)

local now_us, now_ms = now_us_ms()
local seq = math.max(now_us, tonumber(redis.call('GET', KEYS[1]) or '0') or 0)
-- Persist it, so that a scheme registered later (even within the same microsecond or after a
-- clock step back) gets a strictly greater sequence number: `max(now_us, seq + 1)`.
redis.call('SET', KEYS[1], fmt(seq))
local expiry = now_ms + lease

local marked = 0
for _, tbl in ipairs(tables) do
  for _, key in ipairs(affected_keys(tbl)) do
    local v = redis.call('GET', key)
    if v and is_marker(v) then
      local ids = marker_ids(v)
      local found = false
      for _, id in ipairs(ids) do
        if id == writer then found = true end
      end
      if not found then ids[#ids + 1] = writer end
      redis.call('SET', key, '!' .. table.concat(ids, ','), 'KEEPTTL')
      raise_ttl(key, lease, true)
    else
      redis.call('SET', key, '!' .. writer, 'PX', fmt(lease))
    end
    marked = marked + 1
  end
  redis.call('HSET', tbl.writers_key, writer, fmt(seq) .. ' ' .. fmt(expiry))
  raise_ttl(tbl.writers_key, lease, true)
end
return marked
