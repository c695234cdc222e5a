//! The Lua scripts behind every operation, loaded once per process.
//!
//! Each script is `lua/prelude.lua` followed by its body. [`redis::Script`]
//! calls it with EVALSHA and, when Redis answers NOSCRIPT (after a restart,
//! a failover or SCRIPT FLUSH), loads it and calls again, so the backend
//! survives a Redis that lost its script cache.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The backend's scripts.
pub(crate) struct Scripts {
    /// Put, Mutate and Delete (`lua/write.lua`).
    pub write: Script,
    /// One page of a Get or Scan (`lua/read.lua`).
    pub read: Script,
    /// One batch of the TTL sweeper (`lua/sweep.lua`).
    pub sweep: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// The scripts, hashed once.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    write: script(include_str!("lua/write.lua")),
    read: script(include_str!("lua/read.lua")),
    sweep: script(include_str!("lua/sweep.lua")),
});
