//! Profiles: per-table caching settings, chosen by table-name pattern.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A kind of read that automatic caching may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CacheOp {
    /// Single-row reads (`find_by_id`, `one`).
    Get,
    /// Lists (`all`).
    Fetch,
    /// `count`.
    Count,
    /// Other aggregates (`sum`, `max`, …).
    Aggregate,
    /// Existence checks.
    Exists,
}

impl CacheOp {
    /// Every op (`"all"` in configuration).
    pub const ALL: [CacheOp; 5] = [CacheOp::Get, CacheOp::Fetch, CacheOp::Count, CacheOp::Aggregate, CacheOp::Exists];

    /// The op's configuration name.
    pub fn name(self) -> &'static str {
        match self {
            CacheOp::Get => "get",
            CacheOp::Fetch => "fetch",
            CacheOp::Count => "count",
            CacheOp::Aggregate => "aggregate",
            CacheOp::Exists => "exists",
        }
    }
}

impl fmt::Display for CacheOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CacheOp {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CacheOp::ALL.into_iter().find(|op| op.name() == s).ok_or_else(|| ConfigError::UnknownOp { op: s.to_owned() })
    }
}

/// A configuration mistake, found when the configuration is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An op name that does not exist.
    #[error("unknown cache op {op:?} (expected one of: get, fetch, count, aggregate, exists, all)")]
    UnknownOp {
        /// The op given.
        op: String,
    },
    /// A zero timeout.
    #[error("timeout of profile {pattern:?} must be greater than zero")]
    ZeroTimeout {
        /// The profile's pattern.
        pattern: String,
    },
    /// A pattern that is not a table name or a `*` glob over table names.
    #[error("malformed table pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same pattern configured twice.
    #[error("table pattern {pattern:?} is configured twice")]
    DuplicatePattern {
        /// The pattern given.
        pattern: String,
    },
    /// A prefix that would break keys.
    #[error(transparent)]
    BadPrefix(#[from] crate::keys::InvalidPrefix),
    /// Any other invalid setting.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
}

/// Caching settings for the tables a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// Ops served automatically (empty: manual caching only).
    pub ops: BTreeSet<CacheOp>,
    /// How long a cached value lives.
    pub timeout: Duration,
    /// Dog-pile lock on misses.
    pub lock: bool,
    /// Keep single-row gets in process too (invalidated like the rest).
    pub local_get: bool,
    /// Write saved rows into the cache: `None` (off), `Some("")` (by primary key), or a column.
    pub cache_on_save: Option<String>,
    /// Share entries between databases (the database is left out of keys).
    pub db_agnostic: bool,
    /// Whether caching is on at all for these tables (`false`: reads always go to the database).
    pub enabled: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            ops: BTreeSet::new(),
            timeout: Duration::from_secs(3600),
            lock: false,
            local_get: false,
            cache_on_save: None,
            db_agnostic: true,
            enabled: true,
        }
    }
}

impl Profile {
    /// Starts a profile builder from the defaults (no automatic ops, one hour).
    pub fn builder() -> ProfileBuilder {
        ProfileBuilder { profile: Profile::default(), ops: Vec::new() }
    }

    /// A disabled profile.
    pub fn disabled() -> Profile {
        Profile { enabled: false, ..Profile::default() }
    }

    /// Whether `op` is served automatically.
    pub fn caches(&self, op: CacheOp) -> bool {
        self.enabled && self.ops.contains(&op)
    }
}

/// Builds a [`Profile`]; validated by [`ProfilesBuilder::build`].
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    profile: Profile,
    ops: Vec<String>,
}

impl ProfileBuilder {
    /// Ops by name: `get`, `fetch`, `count`, `aggregate`, `exists`, or `all`.
    pub fn ops<I, S>(mut self, ops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.ops.extend(ops.into_iter().map(|s| s.as_ref().to_owned()));
        self
    }
    /// Value lifetime.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.profile.timeout = timeout;
        self
    }
    /// Dog-pile lock.
    pub fn lock(mut self, lock: bool) -> Self {
        self.profile.lock = lock;
        self
    }
    /// In-process single-row cache.
    pub fn local_get(mut self, on: bool) -> Self {
        self.profile.local_get = on;
        self
    }
    /// Cache saved rows for gets by primary key (`""`) or by the named column.
    pub fn cache_on_save(mut self, column: impl Into<String>) -> Self {
        self.profile.cache_on_save = Some(column.into());
        self
    }
    /// Share entries across databases.
    pub fn db_agnostic(mut self, on: bool) -> Self {
        self.profile.db_agnostic = on;
        self
    }
    /// Turn caching off for these tables.
    pub fn disabled(mut self) -> Self {
        self.profile.enabled = false;
        self
    }

    fn finish(self, pattern: &str) -> Result<Profile, ConfigError> {
        let mut profile = self.profile;
        for op in &self.ops {
            if op == "all" {
                profile.ops.extend(CacheOp::ALL);
            } else {
                profile.ops.insert(op.parse()?);
            }
        }
        if profile.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout { pattern: pattern.to_owned() });
        }
        Ok(profile)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    literal_len: usize,
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::BadPattern { pattern: text.to_owned(), reason };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.contains("**") {
            return Err(bad("`**` is not supported; use a single `*`"));
        }
        if let Some(c) = text.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '*' | '$' | '-'))) {
            let _ = c;
            return Err(bad("only letters, digits, `_`, `.`, `$`, `-` and `*` are allowed"));
        }
        if text.starts_with('.') || text.ends_with('.') || text.contains("..") {
            return Err(bad("empty schema or table name around `.`"));
        }
        Ok(Pattern { text: text.to_owned(), literal_len: text.chars().filter(|c| *c != '*').count() })
    }

    fn is_exact(&self) -> bool {
        !self.text.contains('*')
    }

    fn matches(&self, table: &str) -> bool {
        glob_match(&self.text, table)
    }
}

fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Profiles by table pattern, plus a default for unmatched tables.
///
/// Lookup: an exact table name wins, then the glob with the most literal characters, then the
/// default (which is *disabled* unless set: tables must be opted in, as in the original).
///
/// ```
/// use std::time::Duration;
/// use cacheops_core::{Profile, Profiles};
/// let profiles = Profiles::builder()
///     .profile("post", Profile::builder().ops(["get", "fetch"]).timeout(Duration::from_secs(60)))
///     .profile("blog_*", Profile::builder().ops(["all"]))
///     .build()
///     .unwrap();
/// assert_eq!(profiles.for_table("post").timeout, Duration::from_secs(60));
/// assert!(profiles.for_table("blog_tag").caches(cacheops_core::CacheOp::Count));
/// assert!(!profiles.for_table("user").enabled);
///
/// let err = Profiles::builder().profile("post", Profile::builder().ops(["gett"])).build();
/// assert!(err.unwrap_err().to_string().contains("unknown cache op \"gett\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profiles {
    entries: Vec<(Pattern, Profile)>,
    default: Profile,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles { entries: Vec::new(), default: Profile::disabled() }
    }
}

impl Profiles {
    /// A builder.
    pub fn builder() -> ProfilesBuilder {
        ProfilesBuilder { entries: Vec::new(), default: None }
    }

    /// The profile of a table.
    pub fn for_table(&self, table: &str) -> &Profile {
        let mut best: Option<&(Pattern, Profile)> = None;
        for entry in &self.entries {
            if !entry.0.matches(table) {
                continue;
            }
            if entry.0.is_exact() {
                return &entry.1;
            }
            if best.is_none_or(|b| entry.0.literal_len > b.0.literal_len) {
                best = Some(entry);
            }
        }
        best.map_or(&self.default, |b| &b.1)
    }

    /// Whether some pattern (not the default) matches the table.
    pub fn is_configured(&self, table: &str) -> bool {
        self.entries.iter().any(|(p, _)| p.matches(table))
    }
}

/// Builds [`Profiles`], validating every pattern and profile.
#[derive(Debug, Clone)]
pub struct ProfilesBuilder {
    entries: Vec<(String, ProfileBuilder)>,
    default: Option<ProfileBuilder>,
}

impl ProfilesBuilder {
    /// Adds a profile for a table name or glob (`post`, `blog_*`, `*`).
    pub fn profile(mut self, pattern: impl Into<String>, profile: ProfileBuilder) -> Self {
        self.entries.push((pattern.into(), profile));
        self
    }

    /// The profile of tables no pattern matches (default: disabled).
    pub fn default_profile(mut self, profile: ProfileBuilder) -> Self {
        self.default = Some(profile);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Profiles, ConfigError> {
        let mut entries: Vec<(Pattern, Profile)> = Vec::new();
        for (text, builder) in self.entries {
            let pattern = Pattern::parse(&text)?;
            if entries.iter().any(|(p, _)| p.text == pattern.text) {
                return Err(ConfigError::DuplicatePattern { pattern: text });
            }
            let profile = builder.finish(&text)?;
            entries.push((pattern, profile));
        }
        let default = match self.default {
            Some(b) => b.finish("<default>")?,
            None => Profile::disabled(),
        };
        Ok(Profiles { entries, default })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_validate() {
        for bad in ["", "a b", "po**st", "a..b", ".x", "x{y}"] {
            let r = Profiles::builder().profile(bad, Profile::builder()).build();
            assert!(matches!(r, Err(ConfigError::BadPattern { .. })), "{bad:?} accepted");
        }
        let r = Profiles::builder().profile("post", Profile::builder().timeout(Duration::ZERO)).build();
        assert!(matches!(r, Err(ConfigError::ZeroTimeout { .. })));
        let r = Profiles::builder().profile("p", Profile::builder()).profile("p", Profile::builder()).build();
        assert!(matches!(r, Err(ConfigError::DuplicatePattern { .. })));
    }

    #[test]
    fn most_specific_wins() {
        let p = Profiles::builder()
            .profile("*", Profile::builder().timeout(Duration::from_secs(1)))
            .profile("blog_*", Profile::builder().timeout(Duration::from_secs(2)))
            .profile("blog_post", Profile::builder().timeout(Duration::from_secs(3)))
            .build()
            .unwrap();
        assert_eq!(p.for_table("blog_post").timeout.as_secs(), 3);
        assert_eq!(p.for_table("blog_tag").timeout.as_secs(), 2);
        assert_eq!(p.for_table("user").timeout.as_secs(), 1);
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxcyyb"));
        assert!(glob_match("*", ""));
    }
}
