//! Cached views (issue 13): a hit of a cached axum view next to the same handler uncached, in the
//! same run, per backend. The handler reads one `post` by primary key from PostgreSQL and renders
//! it as a small HTML page; requests go through the router in process (`oneshot`, no socket), so
//! the figures are the view layer's and the handler's, not the network's.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use cacheops::{Cache, Dep};
use cacheops_axum::{cached_view_as, cached_view_as_auto};
use cacheops_sea_orm::{CachedConnection, SelectCacheExt};
use http_body_util::BodyExt;
use sea_orm::{DatabaseConnection, EntityTrait};
use tower::ServiceExt;

use crate::schema::post;
use crate::util::{e, summarize};

fn html(p: &post::Model) -> String {
    format!(
        "<article><h1>{}</h1><p>category {}, author {}</p><div>{}</div></article>",
        p.title, p.category_id, p.author_id, p.body
    )
}

async fn page_raw(State(db): State<DatabaseConnection>, Path(id): Path<i32>) -> String {
    match post::Entity::find_by_id(id).one(&db).await {
        Ok(Some(p)) => html(&p),
        _ => String::new(),
    }
}

async fn page_cached_read(State(db): State<CachedConnection>, Path(id): Path<i32>) -> String {
    match post::Entity::find_by_id(id).cache().one(&db).await {
        Ok(Some(p)) => html(&p),
        _ => String::new(),
    }
}

/// Median and p99 (µs) of `n` GETs of `/post/{id}` through `app`, checking the `x-cache` verdict.
async fn sample(app: &Router, ids: &[i32], expect: Option<&str>) -> Result<(f64, f64), String> {
    let mut samples = Vec::with_capacity(ids.len());
    for id in ids {
        let req = http::Request::get(format!("/post/{id}")).body(axum::body::Body::empty()).map_err(e("request"))?;
        let t = Instant::now();
        let res = app.clone().oneshot(req).await.map_err(e("oneshot"))?;
        let verdict = res.headers().get("x-cache").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = res.into_body().collect().await.map_err(e("body"))?.to_bytes();
        samples.push(t.elapsed());
        if body.is_empty() {
            return Err(format!("/post/{id}: empty page"));
        }
        if let Some(want) = expect
            && verdict.as_deref() != Some(want)
        {
            return Err(format!("/post/{id}: x-cache {verdict:?}, expected {want}"));
        }
    }
    Ok(summarize(&mut samples))
}

/// Prints `view_nocache`, `view_hit_deps`, `view_hit_auto` and their ratios for `cache`'s backend.
pub async fn view_figures(raw: &DatabaseConnection, cache: &Cache, ids: &[i32], redis_rtt: f64) -> Result<(), String> {
    let db = CachedConnection::new(raw.clone(), cache.clone());
    let uncached = Router::new().route("/post/{id}", get(page_raw)).with_state(raw.clone());
    let deps = Router::new()
        .route(
            "/post/{id}",
            get(page_raw)
                .layer(cached_view_as(cache, "bench_view_deps", Dep::table("post")).timeout(Duration::from_secs(600))),
        )
        .with_state(raw.clone());
    let auto = Router::new()
        .route(
            "/post/{id}",
            get(page_cached_read)
                .layer(cached_view_as_auto(cache, "bench_view_auto").timeout(Duration::from_secs(600))),
        )
        .with_state(db);
    let (nm, np) = sample(&uncached, ids, None).await?;
    sample(&deps, ids, Some("miss")).await?;
    let (dm, dp) = sample(&deps, ids, Some("hit")).await?;
    sample(&auto, ids, Some("miss")).await?;
    let (am, ap) = sample(&auto, ids, Some("hit")).await?;
    println!("# views (axum router in process, handler: post by pk from PostgreSQL rendered as HTML)");
    println!("view_nocache {nm:.1} {np:.1}");
    println!("view_hit_deps {dm:.1} {dp:.1}");
    println!("view_hit_auto {am:.1} {ap:.1}");
    println!("view_nocache/view_hit_deps {:.2}", nm / dm);
    println!("view_nocache/view_hit_auto {:.2}", nm / am);
    if redis_rtt.is_finite() && redis_rtt > 0.0 {
        println!("view_hit_deps/redis_rtt {:.2}", dm / redis_rtt);
    }
    Ok(())
}

/// Prints `fragment_render`, `fragment_hit`, `fragment_hit_via_render` and their ratios: a
/// MiniJinja fragment (a list of 50 posts with a few fields) rendered each time, next to the same
/// block under `cached_as` served from the cache, rendered directly (`block_in_place`) and through
/// `cacheops_minijinja::render` (a blocking-pool hop).
pub async fn fragment_figures(cache: &Cache, n: usize, redis_rtt: f64) -> Result<(), String> {
    let fragments = cacheops_minijinja::Fragments::new(cache);
    let mut env = minijinja::Environment::new();
    fragments.install(&mut env);
    let body = "<ul>{% for p in posts %}<li class=\"{{ loop.cycle('odd', 'even') }}\"><a href=\"/post/{{ p.id }}\">{{ p.title|title }}</a> in {{ p.category }}</li>{% endfor %}</ul>";
    env.add_template_owned("plain", body.to_owned()).map_err(e("template"))?;
    env.add_template_owned(
        "cached",
        format!("{{% call cached_as(\"post\", \"bench_fragment\") %}}{body}{{% endcall %}}"),
    )
    .map_err(e("template"))?;
    let posts: Vec<minijinja::Value> = (1..=50)
        .map(|i| minijinja::context! { id => i, title => format!("post number {i}"), category => i % 7 })
        .collect();
    let ctx = minijinja::context! { posts => posts };
    let env = std::sync::Arc::new(env);
    let plain = env.get_template("plain").map_err(e("template"))?;
    let cached = env.get_template("cached").map_err(e("template"))?;
    let expected = plain.render(&ctx).map_err(e("render"))?;
    if cached.render(&ctx).map_err(e("render"))? != expected {
        return Err("the cached fragment differs from the plain one".into());
    }
    let time = |f: &mut dyn FnMut() -> Result<String, String>| -> Result<(f64, f64), String> {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let out = f()?;
            samples.push(t.elapsed());
            if out != expected {
                return Err("a fragment rendered differently".into());
            }
        }
        Ok(summarize(&mut samples))
    };
    let (rm, rp) = time(&mut || plain.render(&ctx).map_err(e("render")))?;
    let (hm, hp) = time(&mut || cached.render(&ctx).map_err(e("render")))?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = cacheops_minijinja::render(&env, "cached", ctx.clone()).await.map_err(e("render"))?;
        samples.push(t.elapsed());
        if out != expected {
            return Err("a fragment rendered differently".into());
        }
    }
    let (vm, vp) = summarize(&mut samples);
    println!("# fragments (MiniJinja: 50 posts in a list; the same block rendered vs a cached_as hit)");
    println!("fragment_render {rm:.1} {rp:.1}");
    println!("fragment_hit {hm:.1} {hp:.1}");
    println!("fragment_hit_via_render {vm:.1} {vp:.1}");
    println!("fragment_render/fragment_hit {:.2}", rm / hm);
    if redis_rtt.is_finite() && redis_rtt > 0.0 {
        println!("fragment_hit/redis_rtt {:.2}", hm / redis_rtt);
    }
    Ok(())
}
