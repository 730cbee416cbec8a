//! The Lua scripts, loaded once per process and invoked by SHA (`EVALSHA`, reloaded on
//! `NOSCRIPT` by [`redis::ScriptInvocation::invoke_async`]).

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// Source of each script (common prelude included), for inspection and tests.
pub mod source {
    /// `read.lua`: the read-check.
    pub const READ: &str = include_str!("lua/read.lua");
    /// `store.lua`: store a value if its stamps are current.
    pub const STORE: &str = include_str!("lua/store.lua");
    /// `mark.lua`: begin or renew a write lease.
    pub const MARK: &str = include_str!("lua/mark.lua");
    /// `finish.lua`: end a write lease or invalidate.
    pub const FINISH: &str = include_str!("lua/finish.lua");
    /// `delete_stamps.lua`: `invalidate_model` / `invalidate_all`.
    pub const DELETE_STAMPS: &str = include_str!("lua/delete_stamps.lua");
}

pub(crate) struct Scripts {
    pub(crate) read: Script,
    pub(crate) store: Script,
    pub(crate) mark: Script,
    pub(crate) finish: Script,
    pub(crate) delete_stamps: Script,
}

impl Scripts {
    pub(crate) fn all(&self) -> [&Script; 5] {
        [&self.read, &self.store, &self.mark, &self.finish, &self.delete_stamps]
    }
}

/// The first line of the scripts that end or place leases: `allow-oom` lets them run when
/// Redis is at `maxmemory` with `noeviction` (a marker is a few bytes over the limit; without
/// it the mark is refused, and the write would have to be refused too). The read and store
/// scripts stay unflagged: at OOM they are refused, which only costs misses.
const ALLOW_OOM: &str = "#!lua flags=allow-oom\n";

fn script(shebang: &str, body: &str) -> Script {
    let mut code = String::with_capacity(shebang.len() + COMMON.len() + body.len() + 1);
    code.push_str(shebang);
    code.push_str(COMMON);
    code.push('\n');
    code.push_str(body);
    Script::new(&code)
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    read: script("", source::READ),
    store: script("", source::STORE),
    mark: script(ALLOW_OOM, source::MARK),
    finish: script(ALLOW_OOM, source::FINISH),
    delete_stamps: script(ALLOW_OOM, source::DELETE_STAMPS),
});
