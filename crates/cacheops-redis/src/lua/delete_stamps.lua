-- Deletes stamp keys, leaving markers alone (protocol.rs `Backend::delete_stamps`):
-- invalidate_model (table keys) and invalidate_all (epoch).
-- KEYS: the keys (all in one hash slot). Returns the number deleted.
local deleted = 0
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v and not is_marker(v) then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
return deleted
