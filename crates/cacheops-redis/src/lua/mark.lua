-- Mark: begin or renew a write lease (protocol.rs `Backend::mark`).
-- KEYS: per table: seq key, table key, schemes key, writers key.
-- ARGV: writer, lease_ms, then the tables (see parse_tables in common.lua).
-- Returns the number of keys marked.
local writer = ARGV[1]
local lease = tonumber(ARGV[2])
local tables = parse_tables(3)

local now_us, now_ms = now_us_ms()
local expiry = now_ms + lease

local marked = 0
for _, tbl in ipairs(tables) do
  local seq = math.max(now_us, tonumber(redis.call('GET', tbl.seq_key) or '0') or 0)
  -- Persist it, so that a scheme registered later (even within the same microsecond or after a
  -- clock step back) gets a strictly greater sequence number: `max(now_us, seq + 1)`.
  redis.call('SET', tbl.seq_key, fmt(seq))
  for _, key in ipairs(affected_keys(tbl)) do
    -- A stamp, nothing, or a marker whose entries all expired: a new marker.
    local v = get_stamp(key, now_ms)
    local entries = {}
    if v and is_marker(v) then entries = live_entries(v, now_ms) end
    local found = false
    for _, e in ipairs(entries) do
      if e[1] == writer then
        found = true
        if e[2] < expiry then e[2] = expiry end -- raised, never lowered
      end
    end
    if not found then entries[#entries + 1] = { writer, expiry } end
    -- A plain SET: the key loses any TTL it had as a conj stamp (a marker is never volatile).
    redis.call('SET', key, render_marker(entries))
    marked = marked + 1
  end
  live_writers(tbl.writers_key, now_ms) -- drops expired records
  redis.call('HSET', tbl.writers_key, writer, fmt(seq) .. ' ' .. fmt(expiry))
  redis.call('PERSIST', tbl.writers_key) -- never volatile (a no-op unless set by an old version)
end
return marked
