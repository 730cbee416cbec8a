-- Shared helpers, prepended to every cacheops script (see src/scripts.rs).
-- Lua numbers are doubles: microsecond timestamps (~1.8e15) are exact below 2^53, but they must be
-- rendered with string.format('%d', x), never tostring (which gives "1.7e+15").
if redis.replicate_commands then redis.replicate_commands() end

local function is_marker(s)
  return string.byte(s, 1) == 33 -- '!'
end

local function fmt(n)
  return string.format('%d', n)
end

-- now in microseconds and in milliseconds, from the server clock.
local function now_us_ms()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return us, math.floor(us / 1000)
end

-- Raises the TTL of `key` to at least `ms`. A key without TTL (-1) gets `ms` when
-- `set_when_persistent` is true, and keeps no TTL otherwise. A missing key (-2) is left alone.
local function raise_ttl(key, ms, set_when_persistent)
  local t = redis.call('PTTL', key)
  if t == -1 then
    if set_when_persistent then redis.call('PEXPIRE', key, fmt(ms)) end
  elseif t >= 0 and t < ms then
    redis.call('PEXPIRE', key, fmt(ms))
  end
end

-- Splits a marker "!a,b" into its writer ids.
local function marker_ids(v)
  local ids = {}
  for id in string.gmatch(string.sub(v, 2), '[^,]+') do
    ids[#ids + 1] = id
  end
  return ids
end

-- Reads the write description shared by mark.lua and finish.lua.
-- KEYS: seq, then per table: table key, schemes key, writers key.
-- ARGV from `ai`: ntables, then per table: conj_prefix, table_level ('0'|'1'), nrows,
--   per row: ncols, then ncols pairs (column, rendered value).
local function parse_tables(ai)
  local ntables = tonumber(ARGV[ai]); ai = ai + 1
  local tables = {}
  local ki = 2
  for t = 1, ntables do
    local tbl = {
      table_key = KEYS[ki], schemes_key = KEYS[ki + 1], writers_key = KEYS[ki + 2],
      conj_prefix = ARGV[ai], table_level = ARGV[ai + 1] == '1', rows = {},
    }
    ki = ki + 3
    local nrows = tonumber(ARGV[ai + 2]); ai = ai + 3
    for r = 1, nrows do
      local ncols = tonumber(ARGV[ai]); ai = ai + 1
      local row = {}
      for c = 1, ncols do
        row[ARGV[ai]] = ARGV[ai + 1]
        ai = ai + 2
      end
      tbl.rows[r] = row
    end
    tables[t] = tbl
  end
  return tables
end

-- The keys affected by a write to one table, given its registered schemes (protocol.rs
-- `affected_keys`): per row and scheme the conj key, or the table key when a row lacks a
-- scheme column or the write is table-level.
local function affected_keys(tbl)
  local schemes = redis.call('HKEYS', tbl.schemes_key)
  local keys, seen = {}, {}
  local table_level = tbl.table_level
  for _, row in ipairs(tbl.rows) do
    for _, scheme in ipairs(schemes) do
      local parts = { tbl.conj_prefix }
      local complete = true
      local i = 0
      if scheme ~= '' then
        for col in string.gmatch(scheme, '[^,]+') do
          local v = row[col]
          if v == nil then
            complete = false
            break
          end
          if i > 0 then parts[#parts + 1] = '&' end
          parts[#parts + 1] = col
          parts[#parts + 1] = '='
          parts[#parts + 1] = v
          i = i + 1
        end
      end
      if complete then
        local key = table.concat(parts)
        if not seen[key] then
          seen[key] = true
          keys[#keys + 1] = key
        end
      else
        table_level = true
      end
    end
  end
  if table_level and not seen[tbl.table_key] then
    keys[#keys + 1] = tbl.table_key
  end
  return keys
end
