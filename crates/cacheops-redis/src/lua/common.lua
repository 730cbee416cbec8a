-- Shared helpers, prepended to every cacheops script (see src/scripts.rs).
-- Lua numbers are doubles: microsecond timestamps (~1.8e15) are exact below 2^53, but they must be
-- rendered with string.format('%d', x), never tostring (which gives "1.7e+15").
if redis.replicate_commands then redis.replicate_commands() end

-- Server identity (see KeySpace::boot): each slot group's boot key (`<base>b`, the base being
-- the `{tag}:<version>:` of a table or of the namespace) holds the run_id of the Redis process it
-- was last verified on. On another one (a restart, maybe from an older RDB/AOF snapshot that
-- brought old stamps and values back; a promoted replica), that group's epoch (`<base>e`) goes:
-- every value stored with it is dead. Scripts call it for the base of every group they touch,
-- first; hits (a client-side MGET) also compare the boot key with the run_id of the server that
-- answered.
local run_id = nil
local verified = {}
local function verify_boot(key)
  local base = key and string.match(key, '^(%b{}:%d+:)')
  if not base or verified[base] then return end
  verified[base] = true
  if run_id == nil then
    run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or false
  end
  if not run_id then return end
  local boot = base .. 'b'
  if redis.call('GET', boot) ~= run_id then
    redis.call('DEL', base .. 'e')
    redis.call('SET', boot, run_id)
  end
end

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

-- Markers carry their own lease expiry and have NO Redis TTL, so that a `volatile-*` eviction
-- policy can never evict a write lease: "!<id>@<expiry ms>,<id>@<expiry ms>,...", one entry per
-- writer, the expiry in the server's TIME milliseconds. An entry is live while expiry > now; a
-- marker with no live entry is ABSENT for every operation (and is deleted when touched).

-- The entries of a marker: a list of {id, expiry}. An entry that does not parse (no "@digits")
-- counts as expired.
local function marker_entries(v)
  local entries = {}
  for item in string.gmatch(string.sub(v, 2), '[^,]+') do
    local id, exp = string.match(item, '^(.*)@(%d+)$')
    if id then
      entries[#entries + 1] = { id, tonumber(exp) }
    else
      entries[#entries + 1] = { item, 0 }
    end
  end
  return entries
end

-- The live entries of a marker.
local function live_entries(v, now_ms)
  local live = {}
  for _, e in ipairs(marker_entries(v)) do
    if e[2] > now_ms then live[#live + 1] = e end
  end
  return live
end

local function render_marker(entries)
  local parts = {}
  for i, e in ipairs(entries) do
    parts[i] = e[1] .. '@' .. fmt(e[2])
  end
  return '!' .. table.concat(parts, ',')
end

-- GET a stamp key as the protocol sees it: nil when absent or when it holds a marker whose
-- entries have all expired (that key is deleted: the cleanup of leases that ended without a
-- finish); otherwise its content (a stamp or a live marker).
local function get_stamp(key, now_ms)
  local v = redis.call('GET', key)
  if v and is_marker(v) and #live_entries(v, now_ms) == 0 then
    redis.call('DEL', key)
    return nil
  end
  return v
end

-- Drops the expired entries of a writers hash (Redis deletes the hash with its last field) and
-- returns the live writers' mark sequence numbers. The hash has no TTL: entries carry expiries.
local function live_writers(writers_key, now_ms)
  local live = {}
  local w = redis.call('HGETALL', writers_key)
  for i = 1, #w, 2 do
    local mark_seq, expiry = string.match(w[i + 1], '^(%d+) (%d+)$')
    mark_seq, expiry = tonumber(mark_seq), tonumber(expiry)
    if not expiry or not mark_seq or expiry <= now_ms then
      redis.call('HDEL', writers_key, w[i])
    else
      live[#live + 1] = mark_seq
    end
  end
  return live
end

-- Reads the write description shared by mark.lua and finish.lua, and verifies each table's
-- server identity.
-- KEYS: per table: seq key, table key, schemes key, writers key (the table's slot).
-- ARGV from `ai`: ntables, then per table: conj_prefix, table_level ('0'|'1'), nrows,
--   per row: ncols, then ncols pairs (column, rendered value).
local function parse_tables(ai)
  local ntables = tonumber(ARGV[ai]); ai = ai + 1
  local tables = {}
  local ki = 1
  for t = 1, ntables do
    verify_boot(KEYS[ki])
    local tbl = {
      seq_key = KEYS[ki], table_key = KEYS[ki + 1], schemes_key = KEYS[ki + 2], writers_key = KEYS[ki + 3],
      conj_prefix = ARGV[ai], table_level = ARGV[ai + 1] == '1', rows = {},
    }
    ki = ki + 4
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
local MAX_AFFECTED_KEYS = 1024 -- protocol.rs MAX_AFFECTED_KEYS

local function affected_keys(tbl)
  local schemes = redis.call('HKEYS', tbl.schemes_key)
  local keys, seen = {}, {}
  -- No registered scheme (never registered, or the registry was evicted): table-level. So is a
  -- write that would touch more than MAX_AFFECTED_KEYS keys.
  local over = #tbl.rows * #schemes > MAX_AFFECTED_KEYS
  local table_level = tbl.table_level or #schemes == 0 or over
  local rows = tbl.rows
  if over then rows = {} end
  for _, row in ipairs(rows) do
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
