-- Store (protocol.rs `Backend::store`), or the check of one slot group's stamps before the
-- value is stored in another slot.
-- KEYS: [value, when has_value], then the stamp keys in stamp-vector order (per table: epoch
-- copy, table key, conj keys; or the namespace's epoch).
-- ARGV: stamps (of these keys, joined), data, ttl_ms, conj_ttl_ms, kinds (one char per stamp
-- key: 'e' = an epoch, 'c' = conj key, 's' = other), has_value ('1'|'0'), suffix (the other
-- groups' stamps, checked before: the value's header is stamps .. ' ' .. suffix).
-- Returns 1 when stored (or, without a value, when the stamps are current), 0 when refused.
local expected = ARGV[1]
local ttl = tonumber(ARGV[3])
local conj_ttl = tonumber(ARGV[4])
local kinds = ARGV[5]
local has_value = ARGV[6] == '1'
local suffix = ARGV[7] or ''
local first = 1
if has_value then first = 2 end
for i = first, #KEYS do
  if string.byte(kinds, i - first + 1) == 101 then verify_boot(KEYS[i]) end -- 'e'
end

local current = {}
for i = first, #KEYS do
  local s = redis.call('GET', KEYS[i])
  -- A missing key or a marker (live or expired: an expired one is absent) never equals a stamp.
  if not s or is_marker(s) then return 0 end
  current[#current + 1] = s
end
if table.concat(current, ' ') ~= expected then return 0 end

if has_value then
  local header = expected
  if suffix ~= '' then header = header .. ' ' .. suffix end
  redis.call('SET', KEYS[1], header .. '\n' .. ARGV[2], 'PX', fmt(ttl))
end
-- Conj stamps must outlive the value: extend those whose TTL is below the value's.
for i = first, #KEYS do
  if string.byte(kinds, i - first + 1) == 99 then -- 'c'
    local t = redis.call('PTTL', KEYS[i])
    if t >= 0 and t < ttl then redis.call('PEXPIRE', KEYS[i], fmt(conj_ttl)) end
  end
end
return 1
