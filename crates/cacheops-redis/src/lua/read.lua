-- Read-check (protocol.rs `Backend::read`), or the part of it for one slot group when the
-- tables of a read live in several slots (the value's own group is checked last).
-- KEYS: [value, when has_value], then per table: epoch copy, seq, table key, schemes key,
-- writers key, its conj keys; with no table: [value,] the namespace's epoch.
-- ARGV: new_stamp, conj_ttl_ms, ntables, max_schemes (0: none), has_value ('1'|'0'), suffix
-- (the other groups' stamps, checked before: the value's header is these stamps .. ' ' ..
-- suffix), then per table: nconjs, then the scheme of each conj.
-- Returns {1, data} (hit), {2, stamps} (miss: this call's stamps) or
-- {3, 'pending' | 'new_scheme' | 'scheme_cap'} (bypass).
local new_stamp = ARGV[1]
local conj_ttl = tonumber(ARGV[2])
local ntables = tonumber(ARGV[3])
local max_schemes = tonumber(ARGV[4]) or 0
local has_value = ARGV[5] == '1'
local suffix = ARGV[6] or ''

local stamps = {}
local pending = false
local now_us, now_ms = now_us_ms()
local ki = 1
if has_value then ki = 2 end
local ai = 7

-- 1. An epoch: the table's copy, or the namespace's.
local function epoch(key)
  verify_boot(key)
  local e = get_stamp(key, now_ms)
  if not e then
    redis.call('SET', key, new_stamp)
    e = new_stamp
  end
  if is_marker(e) then pending = true end
  stamps[#stamps + 1] = e
end

if ntables == 0 then
  epoch(KEYS[ki])
end

-- 2-3. Tables and conj keys.
local tables = {}
for t = 1, ntables do
  epoch(KEYS[ki])
  local tbl = { seq_key = KEYS[ki + 1], table_key = KEYS[ki + 2], schemes_key = KEYS[ki + 3], writers_key = KEYS[ki + 4], schemes = {} }
  ki = ki + 5
  local nconjs = tonumber(ARGV[ai]); ai = ai + 1
  local registered = redis.call('EXISTS', tbl.schemes_key) == 1
  -- An expired marker counts as absent (get_stamp deletes it; a fresh stamp replaces it).
  local ts = get_stamp(tbl.table_key, now_ms)
  -- An unregistered (or evicted) schemes hash invalidates the table; a live marker is kept.
  if not ts or (not registered and not is_marker(ts)) then
    redis.call('SET', tbl.table_key, new_stamp)
    ts = new_stamp
  end
  if is_marker(ts) then pending = true end
  stamps[#stamps + 1] = ts
  for c = 1, nconjs do
    local key = KEYS[ki]; ki = ki + 1
    tbl.schemes[c] = ARGV[ai]; ai = ai + 1
    local cs = get_stamp(key, now_ms)
    if not cs then
      redis.call('SET', key, new_stamp, 'PX', fmt(conj_ttl))
      cs = new_stamp
    end
    if is_marker(cs) then pending = true end
    stamps[#stamps + 1] = cs
  end
  tables[t] = tbl
end
local joined = table.concat(stamps, ' ')

-- 4. Hit?
if has_value and not pending then
  local header = joined
  if suffix ~= '' then header = header .. ' ' .. suffix end
  local v = redis.call('GET', KEYS[1])
  if v then
    local pos = string.find(v, '\n', 1, true)
    if pos and string.sub(v, 1, pos - 1) == header then
      return { 1, string.sub(v, pos + 1) }
    end
  end
end

-- 5. Register schemes; a scheme registered after a live writer's mark cannot store.
local new_scheme = false
local reset = false
for _, tbl in ipairs(tables) do
  local live = live_writers(tbl.writers_key, now_ms)
  local done = {}
  for _, scheme in ipairs(tbl.schemes) do
    if not done[scheme] then
      done[scheme] = true
      local seq = tonumber(redis.call('HGET', tbl.schemes_key, scheme))
      if not seq then
        if max_schemes > 0 and redis.call('HLEN', tbl.schemes_key) >= max_schemes then
          -- The registry is full: reset the table. Every value of it (and every read in flight
          -- on it) is dead; unused schemes are gone, used ones register again.
          redis.call('DEL', tbl.schemes_key)
          local ts = get_stamp(tbl.table_key, now_ms)
          if not (ts and is_marker(ts)) then redis.call('SET', tbl.table_key, new_stamp .. 'r') end
          reset = true
        end
        local last = tonumber(redis.call('GET', tbl.seq_key) or '0') or 0
        seq = math.max(now_us, last + 1)
        redis.call('SET', tbl.seq_key, fmt(seq))
        redis.call('HSET', tbl.schemes_key, scheme, fmt(seq))
      end
      for _, mark_seq in ipairs(live) do
        if mark_seq < seq then new_scheme = true end
      end
    end
  end
end

-- 6.
if reset then return { 3, 'scheme_cap' } end
if new_scheme then return { 3, 'new_scheme' } end
if pending then return { 3, 'pending' } end
return { 2, joined }
