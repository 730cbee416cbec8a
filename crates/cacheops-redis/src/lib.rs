//! The Redis backend of cacheops: the stamp protocol ([`cacheops_core::protocol`]) as Lua
//! scripts over [redis-rs](https://docs.rs/redis), on a standalone server (TCP or unix socket),
//! the master of a Sentinel group or a Redis Cluster, over TLS or not.
//!
//! * [`RedisBackend`] implements [`cacheops_core::Backend`]; build it with
//!   [`RedisBackend::builder`] (eager [`build`](RedisBackendBuilder::build) or lazy
//!   [`build_lazy`](RedisBackendBuilder::build_lazy)) or wrap your own connection with
//!   [`RedisBackend::from_connection_manager`] / [`RedisBackend::from_cluster_connection`].
//! * Each script call's keys share one hash tag (a table's, `{ct:…}`, or the namespace's,
//!   `{co:<prefix>}`), hence one cluster slot; a namespace's tables spread over a cluster. See
//!   `docs/redis-data-model.md` for the key layout and what eviction can and cannot do.
//! * [`RedisBackendError`] is the one error type; trait methods convert it to
//!   [`cacheops_core::BackendError`].

#![warn(missing_docs)]

mod backend;
mod builder;
mod cluster_direct;
mod direct;
mod error;
mod lock;
mod ops;
pub mod scripts;
mod sentinel;
mod slot;
mod topology;

pub use backend::{FinishStats, RedisBackend, RedisConnection};
pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DIRECT_CONNECTIONS, DEFAULT_REPLICA_ACK_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT,
    DEFAULT_RETRIES, RedisBackendBuilder,
};
pub use error::RedisBackendError;
pub use sentinel::{ReplicaAcks, SentinelConnection};
pub use slot::{SLOTS, key_slot};
