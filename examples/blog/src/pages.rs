//! The HTML pages: a post page cached whole by `cacheops-axum` (dependencies: the reads its
//! handler makes), with a sidebar fragment cached by `cacheops-minijinja`, and an edit form.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use cacheops_minijinja::{Fragments, render};
use minijinja::{Environment, context};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, IntoActiveModel, QueryOrder};
use serde::Deserialize;

use crate::{AppError, AppState, post};

const LAYOUT: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{% block title %}{% endblock %} — cacheops blog</title></head>
<body>
<nav><a href="/">Home</a></nav>
<main>{% block main %}{% endblock %}</main>
</body></html>"#;

/// The home page is rendered on every request; each category's section is a fragment cached
/// until a post of that category changes (`data-rendered` says on which request it was made).
const HOME: &str = r#"{% extends "layout.html" %}
{% block title %}Home{% endblock %}
{% block main %}<h1>Posts by category</h1><p id="request">request {{ request_no }}</p>
{% for c in categories %}
{% call cached_as(dep_row("post", "category_id", c.id), "home_category", extra=c.id) %}
<section id="cat-{{ c.id }}" data-rendered="{{ request_no }}"><h2><a href="/category/{{ c.id }}">Category {{ c.id }}</a></h2>
<ul>{% for p in c.posts %}<li><a href="/post/{{ p.id }}">{{ p.title }}</a></li>{% endfor %}</ul></section>
{% endcall %}
{% endfor %}{% endblock %}"#;

const POST: &str = r#"{% extends "layout.html" %}
{% block title %}{{ post.title }}{% endblock %}
{% block main %}<article><h1 id="title">{{ post.title }}</h1><p>category <a href="/category/{{ post.category_id }}">{{ post.category_id }}</a></p>
<p><a id="edit" href="/post/{{ post.id }}/edit">Edit</a></p></article>{% endblock %}"#;

const CATEGORY: &str = r#"{% extends "layout.html" %}
{% block title %}Category {{ category }}{% endblock %}
{% block main %}<h1>Category {{ category }}</h1><ul id="posts">{% for p in posts %}<li>{{ p.title }}</li>{% endfor %}</ul>{% endblock %}"#;

const EDIT: &str = r#"{% extends "layout.html" %}
{% block title %}Edit {{ post.title }}{% endblock %}
{% block main %}<form method="post" action="/post/{{ post.id }}/edit">
<label>Title <input id="title-input" name="title" value="{{ post.title }}"></label>
<button id="save" type="submit">Save</button></form>{% endblock %}"#;

/// The templates, with the fragment functions installed.
pub fn templates(fragments: &Fragments) -> Result<Arc<Environment<'static>>, minijinja::Error> {
    let mut env = Environment::new();
    fragments.install(&mut env);
    env.add_template("layout.html", LAYOUT)?;
    env.add_template("home.html", HOME)?;
    env.add_template("post.html", POST)?;
    env.add_template("category.html", CATEGORY)?;
    env.add_template("edit.html", EDIT)?;
    Ok(Arc::new(env))
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// `GET /`: rendered on every request, its category sections cached as fragments.
pub async fn home(State(s): State<AppState>) -> Result<Response, AppError> {
    let request_no = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    let posts = post::Entity::find().order_by_asc(post::Column::Id).all(&s.db).await?;
    let mut categories: Vec<(i32, Vec<post::Model>)> = Vec::new();
    for p in posts {
        match categories.iter_mut().find(|(c, _)| *c == p.category_id) {
            Some((_, list)) => list.push(p),
            None => categories.push((p.category_id, vec![p])),
        }
    }
    categories.sort_by_key(|(c, _)| *c);
    let categories: Vec<_> = categories.into_iter().map(|(id, posts)| context! { id => id, posts => posts }).collect();
    let html =
        render(&s.templates, "home.html", context! { request_no => request_no, categories => categories }).await?;
    Ok(Html(html).into_response())
}

/// `GET /post/{id}`: cached whole (see [`crate::router`]).
pub async fn post_page(State(s): State<AppState>, Path(id): Path<i32>) -> Result<Response, AppError> {
    let Some(p) = post::Entity::find_by_id(id).one(&s.db).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let html = render(&s.templates, "post.html", context! { post => p }).await?;
    Ok(Html(html).into_response())
}

/// `GET /category/{c}`: cached whole.
pub async fn category_page(State(s): State<AppState>, Path(c): Path<i32>) -> Result<Response, AppError> {
    let posts =
        post::Entity::find().filter(post::Column::CategoryId.eq(c)).order_by_asc(post::Column::Id).all(&s.db).await?;
    let html = render(&s.templates, "category.html", context! { category => c, posts => posts }).await?;
    Ok(Html(html).into_response())
}

/// `GET /post/{id}/edit`: the form (not cached: it is a page to change data).
pub async fn edit_form(State(s): State<AppState>, Path(id): Path<i32>) -> Result<Response, AppError> {
    let Some(p) = cacheops_sea_orm::nocache(post::Entity::find_by_id(id).one(&s.db)).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let html = render(&s.templates, "edit.html", context! { post => p }).await?;
    Ok(Html(html).into_response())
}

/// The edit form's fields.
#[derive(Deserialize)]
pub struct EditForm {
    title: String,
}

/// `POST /post/{id}/edit`: saves through the wrapped connection (which invalidates the post's
/// page, its category's page and the sidebar) and goes back to the post.
pub async fn edit_submit(
    State(s): State<AppState>,
    Path(id): Path<i32>,
    Form(f): Form<EditForm>,
) -> Result<Response, AppError> {
    let Some(found) = cacheops_sea_orm::nocache(post::Entity::find_by_id(id).one(&s.db)).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut p = found.into_active_model();
    p.title = Set(f.title);
    p.update(&s.db).await?;
    Ok(Redirect::to(&format!("/post/{id}")).into_response())
}
