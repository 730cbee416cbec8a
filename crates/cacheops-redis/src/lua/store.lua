-- Store (protocol.rs `Backend::store`).
-- KEYS: value, then the stamp keys in stamp-vector order (epoch, per table: table key, conj keys).
-- ARGV: stamps, data, ttl_ms, conj_ttl_ms, kinds (one char per stamp key: 'c' = conj key, 's' = other).
-- Returns 1 when stored, 0 when refused.
verify_boot()
local expected = ARGV[1]
local ttl = tonumber(ARGV[3])
local conj_ttl = tonumber(ARGV[4])
local kinds = ARGV[5]

local current = {}
for i = 2, #KEYS do
  local s = redis.call('GET', KEYS[i])
  -- A missing key or a marker (live or expired: an expired one is absent) never equals a stamp.
  if not s or is_marker(s) then return 0 end
  current[#current + 1] = s
end
if table.concat(current, ' ') ~= expected then return 0 end

redis.call('SET', KEYS[1], expected .. '\n' .. ARGV[2], 'PX', fmt(ttl))
-- Conj stamps must outlive the value: extend those whose TTL is below the value's.
for i = 2, #KEYS do
  if string.byte(kinds, i - 1) == 99 then -- 'c'
    local t = redis.call('PTTL', KEYS[i])
    if t >= 0 and t < ttl then redis.call('PEXPIRE', KEYS[i], fmt(conj_ttl)) end
  end
end
return 1
