//! cacheops (being written).
