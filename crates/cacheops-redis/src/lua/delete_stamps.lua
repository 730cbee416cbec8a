-- Deletes stamp keys, leaving live markers alone (protocol.rs `Backend::delete_stamps`):
-- invalidate_model (table keys) and invalidate_all (epoch). A marker whose entries all expired is
-- absent, and is deleted as well (not counted).
-- KEYS: the keys (all in one hash slot). Returns the number of stamps deleted.
for _, key in ipairs(KEYS) do verify_boot(key) end
local _, now_ms = now_us_ms()
local deleted = 0
for _, key in ipairs(KEYS) do
  local v = get_stamp(key, now_ms)
  if v and not is_marker(v) then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
