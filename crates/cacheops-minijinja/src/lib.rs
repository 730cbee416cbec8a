//! # cacheops-minijinja
//!
//! Template-fragment caching for [MiniJinja](https://docs.rs/minijinja), like django-cacheops'
//! `{% cached_as %}` / `{% cached %}` tags. MiniJinja has no custom tags; its call blocks are the
//! idiom:
//!
//! ```jinja
//! {% call cached_as(dep_row("post", "category_id", category), "sidebar", timeout=600, extra=lang) %}
//!   … rendered once, then served from the cache until a post of that category changes …
//! {% endcall %}
//! {% call cached("footer", timeout=3600) %}… time only …{% endcall %}
//! ```
//!
//! * `cached_as(deps, name, timeout=, extra=)`: `deps` is a table name, a dependency made with
//!   `dep_table(t)`, `dep_row(table, column, value)` or `dep_sql(sql, [params])`, or a list of
//!   them (also passed in from Rust with [`dep_value`]). The fragment is invalidated by any write
//!   that matches them, exactly like a cached query; its timeout defaults to the profiles'.
//! * `cached(name, timeout=, extra=)`: time only.
//! * `cached_as_auto(name, timeout=, extra=)`: the dependencies are the reads that template
//!   functions of yours make through cacheops while the body renders (waiting with
//!   [`block_on`]); data passed in the context is not a read: give such blocks explicit deps.
//! * The key is the fragment's name and `extra` (any value: a language, a user id …): the same
//!   name and extra share one entry wherever they appear. [`Fragments::invalidate_fragment`]
//!   drops one entry from Rust, in every process.
//! * [`Fragments::add_helper`] registers a caching call of your own that decides from the
//!   template context (bypass for staff, vary on the language …), as the original's
//!   `CacheopsLibrary.decorator_tag`.
//!
//! **Synchronous rendering.** MiniJinja renders synchronously and the cache is async. A cached
//! block waits for its lookup (and, on a miss, its store) on the Tokio runtime it runs in:
//! render with [`render`] (on a blocking thread; any runtime flavour), or call MiniJinja's
//! `render` directly from a multi-threaded runtime (the wait uses `block_in_place`). A lookup
//! finishes before the block's body is rendered, so cached blocks nest. A hit costs one lookup
//! (one Redis round trip); the body is not rendered at all.
//!
//! ```
//! use cacheops::Cache;
//! use cacheops_minijinja::{Fragments, render};
//! use minijinja::{Environment, context};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let cache = Cache::builder().build().await?; // in process; `.redis_url(..)` in production
//!     let fragments = Fragments::new(&cache);
//!     let mut env = Environment::new();
//!     fragments.install(&mut env);
//!     env.add_template("page", r#"{% call cached_as("post", "list", extra=n) %}posts {{ n }}{% endcall %}"#)?;
//!     let env = std::sync::Arc::new(env);
//!     assert_eq!(render(&env, "page", context! { n => 1 }).await?, "posts 1");
//!     fragments.invalidate_fragment("list", &minijinja::Value::from(1)).await?;
//!     Ok(())
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cacheops::{Cache, Dep, Deps, Lookup, Tags, Value as CValue};
use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// The tag space ([`cacheops::Tags`]) each fragment entry depends on (one tag per name and
/// extra), so that [`Fragments::invalidate_fragment`] is one row invalidation that reaches every
/// process.
pub const FRAGMENT_TABLE: &str = "_cacheops_fragment";

/// What a user-defined helper decides for one block ([`Fragments::add_helper`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Decision {
    /// Render the body without the cache.
    Bypass,
    /// Cache the body under `name` and `extra`, depending on `deps` (empty: time only).
    Cache {
        /// The fragment's name.
        name: String,
        /// What else the key holds.
        extra: Value,
        /// What invalidates it.
        deps: Deps,
        /// How long it lives (default: the profiles' timeout of its tables, or the cache's).
        timeout: Option<Duration>,
    },
}

/// A helper's decision function: the block's state, positional arguments and keyword arguments
/// (without `caller`).
pub type HelperFn = dyn Fn(&State, &[Value], &Kwargs) -> Result<Decision, Error> + Send + Sync;

/// Fragment caching on one cache: installs the template functions and invalidates fragments.
#[derive(Debug, Clone)]
pub struct Fragments {
    cache: Cache,
    tags: Tags,
}

impl Fragments {
    /// Fragment caching on `cache`.
    pub fn new(cache: &Cache) -> Self {
        Fragments { cache: cache.clone(), tags: Tags::new(cache, FRAGMENT_TABLE) }
    }

    /// Adds `cached_as`, `cached`, `dep_table`, `dep_row` and `dep_sql` to `env`.
    pub fn install(&self, env: &mut Environment<'_>) {
        let f = self.clone();
        env.add_function("cached_as", move |state: &State, args: Rest<Value>, kwargs: Kwargs| {
            let (deps, name) = match args.as_slice() {
                [deps, name] => (deps_of(deps)?, string(name, "the fragment's name")?),
                [deps] => (deps_of(deps)?, kwargs.get::<String>("name")?),
                _ => return Err(invalid("cached_as(deps, name, timeout=…, extra=…)")),
            };
            let decision = Decision::Cache { name, extra: extra(&kwargs)?, deps, timeout: timeout(&kwargs)? };
            f.block(state, decision, &kwargs)
        });
        let f = self.clone();
        env.add_function("cached", move |state: &State, args: Rest<Value>, kwargs: Kwargs| {
            let name = match args.as_slice() {
                [name] => string(name, "the fragment's name")?,
                [] => kwargs.get::<String>("name")?,
                _ => return Err(invalid("cached(name, timeout=…, extra=…)")),
            };
            let decision =
                Decision::Cache { name, extra: extra(&kwargs)?, deps: Deps::new(), timeout: timeout(&kwargs)? };
            f.block(state, decision, &kwargs)
        });
        let f = self.clone();
        env.add_function("cached_as_auto", move |state: &State, args: Rest<Value>, kwargs: Kwargs| {
            let name = match args.as_slice() {
                [name] => string(name, "the fragment's name")?,
                [] => kwargs.get::<String>("name")?,
                _ => return Err(invalid("cached_as_auto(name, timeout=…, extra=…)")),
            };
            f.auto_block(state, &name, extra(&kwargs)?, timeout(&kwargs)?, &kwargs)
        });
        env.add_function("dep_table", |table: String| dep_map("table", [("table", Value::from(table))]));
        env.add_function("dep_row", |table: String, column: String, value: Value| {
            dep_map("row", [("table", Value::from(table)), ("column", Value::from(column)), ("value", value)])
        });
        env.add_function("dep_sql", |sql: String, params: Option<Value>| {
            dep_map(
                "sql",
                [("sql", Value::from(sql)), ("params", params.unwrap_or_else(|| Value::from(Vec::<Value>::new())))],
            )
        });
    }

    /// Registers `name` as a caching call block whose caching is decided by `decide` from the
    /// template's state and the call's arguments:
    ///
    /// ```
    /// # use cacheops_minijinja::{Decision, Fragments};
    /// # async fn demo(fragments: Fragments, env: &mut minijinja::Environment<'_>) {
    /// // {% call cached_unless_staff("sidebar") %}…{% endcall %}
    /// fragments.add_helper(env, "cached_unless_staff", |state, args, _kwargs| {
    ///     if state.lookup("staff").is_some_and(|v| v.is_true()) {
    ///         return Ok(Decision::Bypass);
    ///     }
    ///     let name = args.first().and_then(|v| v.as_str()).unwrap_or("sidebar").to_owned();
    ///     let lang = state.lookup("lang").unwrap_or_default();
    ///     Ok(Decision::Cache { name, extra: lang, deps: cacheops::Dep::table("post").into(), timeout: None })
    /// });
    /// # }
    /// ```
    pub fn add_helper(
        &self,
        env: &mut Environment<'_>,
        name: &str,
        decide: impl Fn(&State, &[Value], &Kwargs) -> Result<Decision, Error> + Send + Sync + 'static,
    ) {
        let f = self.clone();
        let decide: Arc<HelperFn> = Arc::new(decide);
        env.add_function(name.to_owned(), move |state: &State, args: Rest<Value>, kwargs: Kwargs| {
            let decision = decide(state, &args, &kwargs)?;
            f.block(state, decision, &kwargs)
        });
    }

    /// Drops the entry of fragment `name` with `extra` (use `&Value::UNDEFINED` when the block
    /// has none), in every process.
    pub async fn invalidate_fragment(&self, name: &str, extra: &Value) -> Result<(), cacheops::Error> {
        self.tags.invalidate(&identity(name, extra)).await
    }

    /// An automatic-dependency block: the body renders inside a dependency scope, and the reads
    /// its template functions make through cacheops (waiting with [`block_on`]) are what
    /// invalidates it (with its name and extra, for `invalidate_fragment`); a body that reads
    /// nothing through cacheops lives until its timeout.
    fn auto_block(
        &self,
        state: &State,
        name: &str,
        extra: Value,
        timeout: Option<Duration>,
        kwargs: &Kwargs,
    ) -> Result<Value, Error> {
        let caller: Value = kwargs.get("caller")?;
        let id = identity(name, &extra);
        let f = self.cache.cached_as_auto(format!("fragment\0{name}")).extra(&id);
        let f = match timeout {
            Some(t) => f.timeout(t),
            None => f,
        };
        let text: Result<String, FragmentErr> = wait(f.get_or_compute(&(), || async {
            // The fragment's own tag, so that invalidate_fragment reaches it too.
            self.tags.record(&id).await;
            body_text(&caller, state).map_err(FragmentErr::Template)
        }))?;
        match text {
            Ok(t) => Ok(Value::from_safe_string(t)),
            Err(FragmentErr::Template(e)) => Err(e),
            Err(FragmentErr::Cache(e)) => Err(cache_err(e)),
        }
    }

    /// Renders the block's body, through the cache when `decision` says so.
    fn block(&self, state: &State, decision: Decision, kwargs: &Kwargs) -> Result<Value, Error> {
        let caller: Value = kwargs.get("caller")?;
        let body = || body_text(&caller, state);
        let Decision::Cache { name, extra, deps, timeout } = decision else {
            return Ok(Value::from_safe_string(body()?));
        };
        let id = identity(&name, &extra);
        let deps = deps.with(self.tags.dep(&id));
        let resolved = deps.resolve(&self.cache).map_err(cache_err)?;
        let mut query = self.cache.query(format!("fragment\0{id}").as_bytes(), resolved);
        if let Some(t) = timeout {
            query = query.with_timeout(t);
        }
        // The lookup finishes before the body renders: nested cached blocks wait in turn.
        let looked = wait(self.cache.lookup(&query))?.map_err(cache_err)?;
        match looked {
            Lookup::Hit(bytes) => Ok(Value::from_safe_string(String::from_utf8_lossy(&bytes).into_owned())),
            Lookup::Miss(ticket) => {
                let text = body()?;
                if let Err(e) = wait(self.cache.store(ticket, text.as_bytes()))? {
                    tracing::debug!(error = %e, fragment = %name, "cacheops-minijinja: could not store a fragment");
                }
                Ok(Value::from_safe_string(text))
            }
            Lookup::Bypass(_) => Ok(Value::from_safe_string(body()?)),
        }
    }
}

/// The block's body (`caller`), rendered.
fn body_text(caller: &Value, state: &State) -> Result<String, Error> {
    let v = caller.call(state, &[])?;
    Ok(v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
}

/// A failed automatic block: its body's template error, or the cache's.
enum FragmentErr {
    Template(Error),
    Cache(cacheops::Error),
}

impl From<cacheops::Error> for FragmentErr {
    fn from(e: cacheops::Error) -> Self {
        FragmentErr::Cache(e)
    }
}

/// Renders template `name` of `env` with `ctx` on a blocking thread, where cached blocks can
/// wait for the cache on any Tokio runtime (current-thread included).
pub async fn render(env: &Arc<Environment<'static>>, name: &str, ctx: Value) -> Result<String, Error> {
    let env = Arc::clone(env);
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        ON_BLOCKING_THREAD.with(|f| f.set(true));
        let out = env.get_template(&name).and_then(|t| t.render(ctx));
        ON_BLOCKING_THREAD.with(|f| f.set(false));
        out
    })
    .await
    .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("the render task failed: {e}")))?
}

thread_local! {
    /// Set while [`render`] renders on a blocking thread (where `Handle::block_on` is allowed).
    static ON_BLOCKING_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Waits for `fut` from synchronous template code — for template functions of your own that
/// read through cacheops (a SeaORM read on a `CachedConnection`, a `cached_as` function …):
/// inside a `cached_as_auto` block, such reads become the block's dependencies.
///
/// Runs where [`render`] renders (a blocking thread, any runtime) or on a multi-threaded
/// runtime; elsewhere it is an error that says so. Waits nest (a block inside a block).
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, Error> {
    wait(fut)
}

/// Waits for `fut` on the current Tokio runtime from synchronous template code.
///
/// The future is polled on this thread (inside the runtime's context, so its I/O and timers
/// work) and the thread parks between polls: unlike `Handle::block_on`, this nests, and a
/// task-local scope of an enclosing poll (automatic dependencies) stays visible to it.
fn wait<F: Future>(fut: F) -> Result<F::Output, Error> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "cached fragments render inside a Tokio runtime (see cacheops_minijinja::render)",
        )
    })?;
    let _context = handle.enter();
    if ON_BLOCKING_THREAD.with(std::cell::Cell::get) {
        return Ok(park_on(fut));
    }
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(|| park_on(fut))),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            "on a current-thread Tokio runtime, render templates with cached fragments through cacheops_minijinja::render",
        )),
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` to completion on this thread, parking between polls.
fn park_on<F: Future>(fut: F) -> F::Output {
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The key of a fragment: its name and `extra`, as text.
fn identity(name: &str, extra: &Value) -> String {
    let extra = if extra.is_undefined() || extra.is_none() { String::new() } else { stable(extra) };
    format!("{name}\0{extra}")
}

/// A stable rendering of a value for keys (maps by sorted key, JSON-like).
fn stable(v: &Value) -> String {
    match serde_json::to_value(v) {
        Ok(j) => j.to_string(),
        Err(_) => format!("{v:?}"),
    }
}

fn invalid(usage: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("usage: {{% call {usage} %}}…{{% endcall %}}"))
}

fn cache_err(e: cacheops::Error) -> Error {
    Error::new(ErrorKind::InvalidOperation, "cacheops failed").with_source(e)
}

fn string(v: &Value, what: &str) -> Result<String, Error> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("{what} must be a string")))
}

fn extra(kwargs: &Kwargs) -> Result<Value, Error> {
    Ok(kwargs.get::<Option<Value>>("extra")?.unwrap_or(Value::UNDEFINED))
}

/// `timeout=` in seconds (an integer or a float), positive and finite.
fn timeout(kwargs: &Kwargs) -> Result<Option<Duration>, Error> {
    let Some(v) = kwargs.get::<Option<Value>>("timeout")? else { return Ok(None) };
    let secs = v
        .as_i64()
        .map(|i| i as f64)
        .or_else(|| f64::try_from(v.clone()).ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "timeout= is a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(Error::new(ErrorKind::InvalidOperation, "timeout= must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "timeout= is out of range"))
}

fn dep_map<const N: usize>(kind: &str, fields: [(&str, Value); N]) -> Value {
    let mut map: std::collections::BTreeMap<String, Value> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    map.insert("cacheops_dep".to_owned(), Value::from(kind));
    Value::from(map)
}

/// A dependency as a template value (to pass in the context).
pub fn dep_value(dep: &Dep) -> Value {
    match dep {
        Dep::Table(t) => dep_map("table", [("table", Value::from(t.as_str()))]),
        Dep::Row { table, column, value } => dep_map(
            "row",
            [
                ("table", Value::from(table.as_str())),
                ("column", Value::from(column.as_str())),
                ("value", to_template(value)),
            ],
        ),
        Dep::Sql { sql, params } => dep_map(
            "sql",
            [
                ("sql", Value::from(sql.as_str())),
                ("params", Value::from(params.iter().map(to_template).collect::<Vec<_>>())),
            ],
        ),
        // Explicit dependencies cannot travel as template values: the whole of each table.
        _ => Value::from(Vec::<Value>::new()),
    }
}

fn to_template(v: &CValue) -> Value {
    match v {
        CValue::Null => Value::from(()),
        CValue::Bool(b) => Value::from(*b),
        CValue::Int(i) => Value::from(*i),
        CValue::UInt(u) => Value::from(*u),
        CValue::Float(f) => Value::from(*f),
        CValue::Text(s) => Value::from(s.as_str()),
        other => Value::from(format!("{other:?}")),
    }
}

/// A template value as a cacheops value (for a row's key or a statement's binds).
fn from_template(v: &Value) -> Result<CValue, Error> {
    Ok(match v.kind() {
        ValueKind::None | ValueKind::Undefined => CValue::Null,
        ValueKind::Bool => CValue::Bool(v.is_true()),
        ValueKind::Number => match v.as_i64() {
            Some(i) => CValue::Int(i),
            None => CValue::Float(f64::try_from(v.clone()).map_err(|_| bad_dep("a number out of range"))?),
        },
        ValueKind::String => CValue::Text(v.as_str().unwrap_or_default().to_owned()),
        _ => return Err(bad_dep("a value must be a number, a string, a boolean or none")),
    })
}

fn bad_dep(why: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("cached_as dependency: {why}"))
}

fn field(v: &Value, name: &str) -> Result<Value, Error> {
    let f = v.get_attr(name)?;
    if f.is_undefined() { Err(bad_dep(&format!("missing `{name}`"))) } else { Ok(f) }
}

/// `deps` of `cached_as`: a table name, a `dep_*` value, or a list of them.
fn deps_of(v: &Value) -> Result<Deps, Error> {
    if let Some(t) = v.as_str() {
        return Ok(Deps::from(Dep::table(t)));
    }
    if v.kind() == ValueKind::Seq {
        let mut deps = Deps::new();
        for item in v.try_iter()? {
            deps = deps.with(one_dep(&item)?);
        }
        return Ok(deps);
    }
    Ok(Deps::from(one_dep(v)?))
}

fn one_dep(v: &Value) -> Result<Dep, Error> {
    if let Some(t) = v.as_str() {
        return Ok(Dep::table(t));
    }
    let kind = field(v, "cacheops_dep").map_err(|_| bad_dep("use a table name, dep_table, dep_row or dep_sql"))?;
    let text = |name: &str| field(v, name).and_then(|f| string(&f, name));
    match kind.as_str() {
        Some("table") => Ok(Dep::table(text("table")?)),
        Some("row") => Ok(Dep::row(text("table")?, text("column")?, from_template(&field(v, "value")?)?)),
        Some("sql") => {
            let params = field(v, "params")?;
            let params = params.try_iter()?.map(|p| from_template(&p)).collect::<Result<Vec<_>, _>>()?;
            Ok(Dep::sql(text("sql")?, params))
        }
        _ => Err(bad_dep("unknown kind")),
    }
}
