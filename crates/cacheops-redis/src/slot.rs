//! Redis Cluster hash slots (CRC16/XMODEM of the hash tag, modulo 16384).

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The part of a key that is hashed: the content of the first `{…}` when non-empty, else the key.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|b| *b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The cluster hash slot of a key.
///
/// ```
/// use cacheops_redis::key_slot;
/// assert_eq!(key_slot("foo"), 12182);
/// assert_eq!(key_slot("{co:a}:1:e"), key_slot("{co:a}:1:t:post"));
/// ```
pub fn key_slot(key: &str) -> u16 {
    crc16(hashed_part(key.as_bytes())) % SLOTS
}

/// Checks that every key lies in the slot of the first one.
///
/// Keys with the same hashed part (the usual case: one hash tag) are in the same slot without
/// computing it; the CRC is computed only for keys whose hashed parts differ.
pub(crate) fn check_same_slot<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), crate::RedisBackendError> {
    let mut keys = keys.into_iter();
    let Some(first) = keys.next() else {
        return Ok(());
    };
    let first_part = hashed_part(first.as_bytes());
    let mut first_slot = None;
    for key in keys {
        let part = hashed_part(key.as_bytes());
        if part == first_part {
            continue;
        }
        let slot = *first_slot.get_or_insert_with(|| crc16(first_part) % SLOTS);
        if crc16(part) % SLOTS != slot {
            return Err(crate::RedisBackendError::CrossSlot { first: first.to_owned(), other: key.to_owned() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots() {
        // Values from the Redis Cluster specification / CLUSTER KEYSLOT.
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
    }

    #[test]
    fn same_slot_check() {
        assert!(check_same_slot(["{co:a}:1:e", "{co:a}:1:t:post", "{co:a}:1:q:x"]).is_ok());
        assert!(check_same_slot(std::iter::empty()).is_ok());
        // Different hashed parts in the same slot are fine ("123456789" is in slot 12739, and so
        // is a key hashed on it through a tag).
        assert!(check_same_slot(["123456789", "x{123456789}y"]).is_ok());
        match check_same_slot(["{co:a}:1:e", "{co:a}:1:t:post", "{co:b}:1:t:post"]) {
            Err(crate::RedisBackendError::CrossSlot { first, other }) => {
                assert_eq!((first.as_str(), other.as_str()), ("{co:a}:1:e", "{co:b}:1:t:post"));
            }
            other => panic!("expected CrossSlot, got {other:?}"),
        }
    }
}
