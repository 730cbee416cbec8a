//! The original's template scenarios on MiniJinja, on Redis and in process: a shared entry for
//! the same name, `extra` separating entries, `invalidate_fragment`, invalidation by the
//! fragment's dependencies while the rest of the page renders fresh, a user-defined helper that
//! bypasses for some contexts, nested blocks, and the runtime rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheops::{Cache, Row, Value as CValue};
use cacheops_minijinja::{Decision, Fragments, dep_value, render};
use minijinja::{Environment, Value, context};

async fn caches() -> Vec<Cache> {
    let prefix = format!(
        "mj-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let redis = Cache::builder().redis_url("redis://127.0.0.1:6379/0").prefix(prefix).degrade(false).build().await;
    vec![redis.expect("Redis on 127.0.0.1:6379 (see .ci/run)"), Cache::builder().build().await.unwrap()]
}

/// An environment with the fragment functions and a `tick()` that counts renders of bodies.
fn make_env(
    fragments: &Fragments,
    templates: &[(&'static str, &'static str)],
) -> (Arc<Environment<'static>>, Arc<AtomicUsize>) {
    let mut env = Environment::new();
    fragments.install(&mut env);
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    env.add_function("tick", move || t.fetch_add(1, Ordering::SeqCst) + 1);
    for (name, src) in templates {
        env.add_template(name, src).unwrap();
    }
    (Arc::new(env), ticks)
}

fn post(id: i64, category: i64) -> Row {
    [("id".to_owned(), CValue::Int(id)), ("category_id".to_owned(), CValue::Int(category))].into()
}

#[tokio::test]
async fn the_same_name_shares_one_entry_and_extra_separates_entries() {
    for cache in caches().await {
        let f = Fragments::new(&cache);
        let (env, _) = make_env(
            &f,
            &[
                ("a", r#"A:{% call cached_as("post", "shared") %}body {{ tick() }}{% endcall %}"#),
                ("b", r#"B:{% call cached_as("post", "shared") %}other {{ tick() }}{% endcall %}"#),
                ("x", r#"{% call cached_as("post", "per_lang", extra=lang) %}{{ lang }} {{ tick() }}{% endcall %}"#),
            ],
        );
        assert_eq!(render(&env, "a", context! {}).await.unwrap(), "A:body 1");
        assert_eq!(render(&env, "b", context! {}).await.unwrap(), "B:body 1", "one entry for one name");
        assert_eq!(render(&env, "x", context! { lang => "en" }).await.unwrap(), "en 2");
        assert_eq!(render(&env, "x", context! { lang => "de" }).await.unwrap(), "de 3", "another extra, another entry");
        assert_eq!(render(&env, "x", context! { lang => "en" }).await.unwrap(), "en 2");
    }
}

#[tokio::test]
async fn invalidate_fragment_drops_one_entry() {
    for cache in caches().await {
        let f = Fragments::new(&cache);
        let (env, _) = make_env(
            &f,
            &[("x", r#"{% call cached("side", timeout=600, extra=lang) %}{{ lang }} {{ tick() }}{% endcall %}"#)],
        );
        assert_eq!(render(&env, "x", context! { lang => "en" }).await.unwrap(), "en 1");
        assert_eq!(render(&env, "x", context! { lang => "de" }).await.unwrap(), "de 2");
        assert_eq!(render(&env, "x", context! { lang => "en" }).await.unwrap(), "en 1", "a hit");
        f.invalidate_fragment("side", &Value::from("en")).await.unwrap();
        assert_eq!(render(&env, "x", context! { lang => "en" }).await.unwrap(), "en 3", "dropped");
        assert_eq!(render(&env, "x", context! { lang => "de" }).await.unwrap(), "de 2", "the other extra stays");
    }
}

#[tokio::test]
async fn a_fragment_follows_its_dependencies_and_the_page_around_it_renders_fresh() {
    for cache in caches().await {
        let f = Fragments::new(&cache);
        cache
            .catalog()
            .install([cacheops::TableSchema::new("post").column("category_id", cacheops::ColumnClass::Integer)]);
        let (env, _) = make_env(
            &f,
            &[(
                "page",
                r#"now {{ now }} | {% call cached_as(dep_row("post", "category_id", c), "cat", extra=c) %}cat {{ c }} #{{ tick() }}{% endcall %} | {% call cached_as(dep_sql("SELECT * FROM post WHERE category_id = $1", [4]), "four") %}four #{{ tick() }}{% endcall %}"#,
            )],
        );
        assert_eq!(render(&env, "page", context! { now => 1, c => 3 }).await.unwrap(), "now 1 | cat 3 #1 | four #2");
        assert_eq!(
            render(&env, "page", context! { now => 2, c => 3 }).await.unwrap(),
            "now 2 | cat 3 #1 | four #2",
            "fragments hit, the page is fresh"
        );
        cache.invalidate_obj("post", &post(10, 5)).await.unwrap();
        assert_eq!(
            render(&env, "page", context! { now => 3, c => 3 }).await.unwrap(),
            "now 3 | cat 3 #1 | four #2",
            "a write elsewhere"
        );
        cache.invalidate_obj("post", &post(11, 3)).await.unwrap();
        assert_eq!(
            render(&env, "page", context! { now => 4, c => 3 }).await.unwrap(),
            "now 4 | cat 3 #3 | four #2",
            "its row changed"
        );
        cache.invalidate_obj("post", &post(12, 4)).await.unwrap();
        assert_eq!(
            render(&env, "page", context! { now => 5, c => 3 }).await.unwrap(),
            "now 5 | cat 3 #3 | four #4",
            "the SQL dependency"
        );
        // Dependencies passed in from Rust.
        let (env2, _) = make_env(&f, &[("rs", r#"{% call cached_as(deps, "from_rust") %}{{ tick() }}{% endcall %}"#)]);
        let deps = Value::from(vec![dep_value(&cacheops::Dep::row("post", "category_id", 7))]);
        assert_eq!(render(&env2, "rs", context! { deps => deps.clone() }).await.unwrap(), "1");
        assert_eq!(render(&env2, "rs", context! { deps => deps.clone() }).await.unwrap(), "1");
        cache.invalidate_obj("post", &post(13, 7)).await.unwrap();
        assert_eq!(render(&env2, "rs", context! { deps => deps }).await.unwrap(), "2");
    }
}

#[tokio::test]
async fn a_user_defined_helper_bypasses_for_staff_and_varies_on_the_language() {
    for cache in caches().await {
        let f = Fragments::new(&cache);
        let mut e = Environment::new();
        f.install(&mut e);
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        e.add_function("tick", move || t.fetch_add(1, Ordering::SeqCst) + 1);
        f.add_helper(&mut e, "cached_unless_staff", |state, args, _| {
            if state.lookup("staff").is_some_and(|v| v.is_true()) {
                return Ok(Decision::Bypass);
            }
            let name = args.first().and_then(|v| v.as_str()).unwrap_or("anon").to_owned();
            Ok(Decision::Cache {
                name,
                extra: state.lookup("lang").unwrap_or_default(),
                deps: cacheops::Deps::new(),
                timeout: None,
            })
        });
        e.add_template("p", r#"{% call cached_unless_staff("menu") %}{{ lang }} {{ tick() }}{% endcall %}"#).unwrap();
        let env = Arc::new(e);
        assert_eq!(render(&env, "p", context! { lang => "en" }).await.unwrap(), "en 1");
        assert_eq!(render(&env, "p", context! { lang => "en" }).await.unwrap(), "en 1");
        assert_eq!(render(&env, "p", context! { lang => "en", staff => true }).await.unwrap(), "en 2", "staff: fresh");
        assert_eq!(render(&env, "p", context! { lang => "en", staff => true }).await.unwrap(), "en 3");
        assert_eq!(render(&env, "p", context! { lang => "fr" }).await.unwrap(), "fr 4");
        assert_eq!(render(&env, "p", context! { lang => "en" }).await.unwrap(), "en 1");
    }
}

#[tokio::test]
async fn cached_blocks_nest_and_html_is_not_escaped_twice() {
    for cache in caches().await {
        let f = Fragments::new(&cache);
        let (env, _) = make_env(
            &f,
            &[(
                "n.html",
                r#"{% call cached("outer") %}<b>{{ "<x>" }}</b>{% call cached_as("post", "inner") %}<i>{{ tick() }}</i>{% endcall %}{% endcall %}"#,
            )],
        );
        let first = render(&env, "n.html", context! {}).await.unwrap();
        assert_eq!(first, "<b>&lt;x&gt;</b><i>1</i>");
        assert_eq!(render(&env, "n.html", context! {}).await.unwrap(), first);
        f.invalidate_fragment("outer", &Value::UNDEFINED).await.unwrap();
        assert_eq!(render(&env, "n.html", context! {}).await.unwrap(), first, "the outer re-renders, the inner hits");
    }
}

#[tokio::test]
async fn bad_arguments_are_template_errors() {
    let cache = Cache::builder().build().await.unwrap();
    let f = Fragments::new(&cache);
    for (src, want) in [
        (r#"{% call cached_as() %}x{% endcall %}"#, "usage"),
        (r#"{% call cached("n", timeout=0) %}x{% endcall %}"#, "positive"),
        (r#"{% call cached("n", timeout="soon") %}x{% endcall %}"#, "seconds"),
        (r#"{% call cached_as(42, "n") %}x{% endcall %}"#, "dependency"),
        (r#"{% call cached_as(dep_row("post", "id", [1]), "n") %}x{% endcall %}"#, "dependency"),
    ] {
        let (env, _) = make_env(&f, &[("t", src)]);
        let err = render(&env, "t", context! {}).await.expect_err(src);
        assert!(format!("{err:#}").contains(want), "{src}: {err:#}");
    }
}

#[test]
fn a_current_thread_runtime_needs_render_and_gets_a_clear_error_otherwise() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cache = Cache::builder().build().await.unwrap();
        let f = Fragments::new(&cache);
        let (env, _) = make_env(&f, &[("t", r#"{% call cached("n") %}{{ tick() }}{% endcall %}"#)]);
        let err = env.get_template("t").unwrap().render(context! {}).expect_err("no blocking here");
        assert!(format!("{err:#}").contains("cacheops_minijinja::render"), "{err:#}");
        assert_eq!(render(&env, "t", context! {}).await.unwrap(), "1");
        assert_eq!(render(&env, "t", context! {}).await.unwrap(), "1");
    });
}

#[test]
fn a_multi_thread_runtime_renders_directly() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let cache = Cache::builder().build().await.unwrap();
        let f = Fragments::new(&cache);
        let (env, _) = make_env(&f, &[("t", r#"{% call cached("n") %}{{ tick() }}{% endcall %}"#)]);
        let t = env.get_template("t").unwrap();
        assert_eq!(t.render(context! {}).unwrap(), "1");
        assert_eq!(t.render(context! {}).unwrap(), "1");
    });
}

/// `posts(c)`: a template function reading through cacheops (a cached, analysed read), waiting
/// with `cacheops_minijinja::block_on`; `reads()` counts the "database" reads it made.
fn with_reader(env: &mut Environment<'static>, cache: &Cache) -> Arc<AtomicUsize> {
    let reads = Arc::new(AtomicUsize::new(0));
    let (c, r) = (cache.clone(), reads.clone());
    env.add_function("posts", move |category: i64| -> Result<String, minijinja::Error> {
        let (c, r) = (c.clone(), r.clone());
        cacheops_minijinja::block_on(async move {
            let sql = "SELECT title FROM post WHERE category_id = $1";
            let params = [CValue::Int(category)];
            let analysis = c.analyze(sql, &params).expect("analysis");
            let q = c.sql_query(sql, &params, &analysis, "main", "rows");
            let rows = c
                .get_or_compute(&q, || async move {
                    let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok::<_, cacheops::Error>(format!("rows@{n}").into_bytes())
                })
                .await;
            String::from_utf8(rows.expect("read")).unwrap_or_default()
        })
    });
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_block_depends_on_the_reads_its_template_functions_made() {
    for cache in caches().await {
        cache
            .catalog()
            .install([cacheops::TableSchema::new("post").column("category_id", cacheops::ColumnClass::Integer)]);
        let f = Fragments::new(&cache);
        let mut e = Environment::new();
        f.install(&mut e);
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        e.add_function("tick", move || t.fetch_add(1, Ordering::SeqCst) + 1);
        let reads = with_reader(&mut e, &cache);
        e.add_template(
            "p",
            r#"{% call cached_as_auto("auto", extra=c) %}{{ posts(c) }} #{{ tick() }}{% call cached("inner") %} in{{ tick() }}{% endcall %}{% endcall %}"#,
        )
        .unwrap();
        let env = Arc::new(e);
        let direct = |c: i64| env.get_template("p").unwrap().render(context! { c => c }).unwrap();
        assert_eq!(render(&env, "p", context! { c => 3 }).await.unwrap(), "rows@1 #1 in2");
        assert_eq!(direct(3), "rows@1 #1 in2", "a hit, rendered directly on the multi-threaded runtime");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        cache.invalidate_obj("post", &post(1, 4)).await.unwrap();
        assert_eq!(
            render(&env, "p", context! { c => 3 }).await.unwrap(),
            "rows@1 #1 in2",
            "a write to another category"
        );
        cache.invalidate_obj("post", &post(2, 3)).await.unwrap();
        assert_eq!(render(&env, "p", context! { c => 3 }).await.unwrap(), "rows@2 #3 in2", "its read's rows changed");
        assert_eq!(direct(3), "rows@2 #3 in2");
        f.invalidate_fragment("auto", &Value::from(3)).await.unwrap();
        assert_eq!(direct(3), "rows@2 #4 in2", "invalidate_fragment: re-rendered, its read still cached");
        assert_eq!(render(&env, "p", context! { c => 4 }).await.unwrap(), "rows@3 #5 in2", "another extra");
    }
}
