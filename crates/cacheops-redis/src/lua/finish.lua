-- Finish a write, or invalidate immediately (protocol.rs `Backend::finish`).
-- KEYS: seq, then per table: table key, schemes key, writers key.
-- ARGV: has_writer ('1'|'0'), writer, then the tables (see parse_tables in common.lua).
-- Returns {deleted, touched}: stamp keys deleted, and keys examined (affected keys + writer
-- records). Neither depends on how many cached values depend on those keys.
local has_writer = ARGV[1] == '1'
local writer = ARGV[2]
local tables = parse_tables(3)

local deleted, touched = 0, 0
for _, tbl in ipairs(tables) do
  for _, key in ipairs(affected_keys(tbl)) do
    touched = touched + 1
    local v = redis.call('GET', key)
    if v then
      if not is_marker(v) then
        redis.call('DEL', key)
        deleted = deleted + 1
      elseif has_writer then
        local ids, rest = marker_ids(v), {}
        for _, id in ipairs(ids) do
          if id ~= writer then rest[#rest + 1] = id end
        end
        if #rest == 0 then
          redis.call('DEL', key)
          deleted = deleted + 1
        elseif #rest < #ids then
          redis.call('SET', key, '!' .. table.concat(rest, ','), 'KEEPTTL')
        end
      end
    end
  end
  if has_writer then
    touched = touched + 1
    redis.call('HDEL', tbl.writers_key, writer)
  end
end
return { deleted, touched }
