-- Finish a write, or invalidate immediately (protocol.rs `Backend::finish`).
-- KEYS: per table: seq key, table key, schemes key, writers key.
-- ARGV: has_writer ('1'|'0'), writer, then the tables (see parse_tables in common.lua).
-- Returns {deleted, touched}: stamp keys deleted, and keys examined (affected keys + writer
-- records). Neither depends on how many cached values depend on those keys.
local has_writer = ARGV[1] == '1'
local writer = ARGV[2]
local tables = parse_tables(3)
local _, now_ms = now_us_ms()

local deleted, touched = 0, 0

-- Removes this writer's entry (and the expired ones) from the marker `v` at `key`.
local function release(key, v)
  local all, rest = marker_entries(v), {}
  for _, e in ipairs(all) do
    if e[1] ~= writer and e[2] > now_ms then rest[#rest + 1] = e end
  end
  if #rest == 0 then
    redis.call('DEL', key)
    deleted = deleted + 1
  elseif #rest < #all then
    redis.call('SET', key, render_marker(rest))
  end
end

for _, tbl in ipairs(tables) do
  local table_affected = false
  for _, key in ipairs(affected_keys(tbl)) do
    touched = touched + 1
    if key == tbl.table_key then table_affected = true end
    -- A marker whose entries all expired is absent (get_stamp deletes it).
    local v = get_stamp(key, now_ms)
    if v then
      if not is_marker(v) then
        redis.call('DEL', key)
        deleted = deleted + 1
      elseif has_writer then
        release(key, v)
      end
    end
  end
  if has_writer then
    -- A table marked while no scheme was registered, with a scheme registered since.
    if not table_affected then
      local v = get_stamp(tbl.table_key, now_ms)
      if v and is_marker(v) then release(tbl.table_key, v) end
    end
    touched = touched + 1
    redis.call('HDEL', tbl.writers_key, writer)
  end
  live_writers(tbl.writers_key, now_ms) -- drops expired records (and the hash when empty)
end
return { deleted, touched }
