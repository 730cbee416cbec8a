//! The SeaORM integration against real PostgreSQL and Redis, counting the queries that reach the
//! database like the original's `assertNumQueries`.

mod common;

use common::*;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, IntoActiveModel, QueryOrder, Statement, TransactionTrait};

#[tokio::test]
async fn get_is_cached_and_saving_another_row_keeps_it() {
    let e = env("get").await;
    let p1 = post::Entity::find_by_id(1).one(&e.db).await.unwrap().unwrap();
    post::Entity::find_by_id(2).one(&e.db).await.unwrap();
    assert_eq!(e.take(), 2);
    assert_eq!(post::Entity::find_by_id(1).one(&e.db).await.unwrap().unwrap(), p1);
    assert_eq!(e.take(), 0, "second get is a hit");

    let mut p2 = post::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap().into_active_model();
    e.take();
    p2.title = Set("p2 edited".into());
    p2.update(&e.db).await.unwrap();
    e.take();
    post::Entity::find_by_id(1).one(&e.db).await.unwrap();
    assert_eq!(e.take(), 0, "saving post 2 keeps the cached get of post 1");
    let p2 = post::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap();
    assert_eq!(e.take(), 1);
    assert_eq!(p2.title, "p2 edited");
}

async fn list(e: &Env, cat: i32) -> Vec<post::Model> {
    post::Entity::find()
        .filter(post::Column::CategoryId.eq(cat))
        .order_by_asc(post::Column::Id)
        .all(&e.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn foreign_key_invalidation_is_granular() {
    let e = env("fk").await;
    assert_eq!(list(&e, 3).await.len(), 2);
    assert_eq!(list(&e, 4).await.len(), 2);
    e.take();
    post::ActiveModel {
        title: Set("new".into()),
        category_id: Set(3),
        author_id: Set(9),
        visible: Set(true),
        ..Default::default()
    }
    .insert(&e.db)
    .await
    .unwrap();
    e.take();
    assert_eq!(list(&e, 4).await.len(), 2);
    assert_eq!(e.take(), 0, "category 4 untouched");
    assert_eq!(list(&e, 3).await.len(), 3);
    assert_eq!(e.take(), 1, "category 3 invalidated by the insert");
}

#[tokio::test]
async fn boolean_column_invalidation() {
    let e = env("bool").await;
    let visible =
        || post::Entity::find().filter(post::Column::Visible.eq(true)).order_by_asc(post::Column::Id).all(&e.db);
    assert_eq!(visible().await.unwrap().len(), 3);
    e.take();
    let mut p2 = post::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap().into_active_model();
    p2.visible = Set(true);
    p2.update(&e.db).await.unwrap();
    e.take();
    assert_eq!(visible().await.unwrap().len(), 4);
    assert_eq!(e.take(), 1);
}

#[tokio::test]
async fn bulk_insert_update_many_and_delete_many_invalidate() {
    let e = env("bulk").await;
    for c in [3, 4, 5] {
        list(&e, c).await;
    }
    e.take();
    post::Entity::insert_many([
        post::ActiveModel {
            title: Set("a".into()),
            category_id: Set(5),
            author_id: Set(1),
            visible: Set(true),
            ..Default::default()
        },
        post::ActiveModel {
            title: Set("b".into()),
            category_id: Set(5),
            author_id: Set(1),
            visible: Set(true),
            ..Default::default()
        },
    ])
    .exec(&e.db)
    .await
    .unwrap();
    e.take();
    assert_eq!(list(&e, 5).await.len(), 2);
    list(&e, 3).await;
    assert_eq!(e.take(), 1, "bulk insert into category 5 leaves category 3 cached");

    // update_many moves category 3's posts to category 1: old (3) and new (1) are invalidated, 4 is not.
    let cat1 = || post::Entity::find().filter(post::Column::CategoryId.eq(1)).all(&e.db);
    assert_eq!(cat1().await.unwrap().len(), 0);
    list(&e, 4).await;
    e.take();
    post::Entity::update_many()
        .col_expr(post::Column::CategoryId, Expr::value(1))
        .filter(post::Column::CategoryId.eq(3))
        .exec(&e.db)
        .await
        .unwrap();
    e.take();
    assert_eq!(list(&e, 3).await.len(), 0);
    assert_eq!(cat1().await.unwrap().len(), 2);
    assert_eq!(e.take(), 2, "old and new matches invalidated");
    list(&e, 4).await;
    assert_eq!(e.take(), 0, "category 4 untouched by update_many");

    post::Entity::delete_many().filter(post::Column::CategoryId.eq(5)).exec(&e.db).await.unwrap();
    e.take();
    assert_eq!(list(&e, 5).await.len(), 0);
    assert_eq!(e.take(), 1);
    list(&e, 4).await;
    assert_eq!(e.take(), 0);
}

#[tokio::test]
async fn joins_are_dependencies() {
    let e = env("join").await;
    let with_cat = || post::Entity::find_by_id(1).find_also_related(category::Entity).one(&e.db);
    let (_, c) = with_cat().await.unwrap().unwrap();
    assert_eq!(c.unwrap().title, "c3");
    with_cat().await.unwrap();
    assert_eq!(e.take(), 1);
    let mut c3 = category::Entity::find_by_id(3).one(&e.db).await.unwrap().unwrap().into_active_model();
    c3.title = Set("c3!".into());
    c3.update(&e.db).await.unwrap();
    e.take();
    let (_, c) = with_cat().await.unwrap().unwrap();
    assert_eq!(c.unwrap().title, "c3!", "changing the joined row invalidates");
    assert_eq!(e.take(), 1);

    // Filter on the far table: a change to category 4 does not touch posts joined to category 3.
    let by_title = || post::Entity::find().inner_join(category::Entity).filter(category::Column::Id.eq(3)).all(&e.db);
    assert_eq!(by_title().await.unwrap().len(), 2);
    e.take();
    let mut c4 = category::Entity::find_by_id(4).one(&e.db).await.unwrap().unwrap().into_active_model();
    c4.title = Set("c4!".into());
    c4.update(&e.db).await.unwrap();
    e.take();
    by_title().await.unwrap();
    assert_eq!(e.take(), 0, "far-table filter stays granular");
}

#[tokio::test]
async fn many_to_many_junction_rows_invalidate_both_sides() {
    let e = env("m2m").await;
    let db = &e.db;
    let tags_of = |p: i32| async move {
        post::Entity::find_by_id(p).one(db).await.unwrap().unwrap().find_related(tag::Entity).all(db).await.unwrap()
    };
    let posts_of = |t: i32| async move {
        tag::Entity::find_by_id(t).one(db).await.unwrap().unwrap().find_related(post::Entity).all(db).await.unwrap()
    };
    assert_eq!(tags_of(1).await.len(), 1);
    assert_eq!(tags_of(2).await.len(), 1);
    assert_eq!(posts_of(2).await.len(), 1);
    assert_eq!(posts_of(1).await.len(), 2);
    e.take();
    post_tag::ActiveModel { post_id: Set(1), tag_id: Set(2) }.insert(&e.db).await.unwrap();
    e.take();
    assert_eq!(tags_of(1).await.len(), 2);
    assert_eq!(e.take(), 1, "post 1's tags invalidated (its get stays cached)");
    assert_eq!(posts_of(2).await.len(), 2);
    assert_eq!(e.take(), 1, "tag 2's posts invalidated");
    tags_of(2).await;
    assert_eq!(e.take(), 0, "post 2's tags untouched");
    posts_of(1).await;
    assert_eq!(e.take(), 0, "tag 1's posts untouched although post 1 (same id) changed tags");
    // Removing and clearing.
    post_tag::Entity::delete_many().filter(post_tag::Column::PostId.eq(1)).exec(&e.db).await.unwrap();
    e.take();
    assert_eq!(tags_of(1).await.len(), 0);
    assert_eq!(posts_of(2).await.len(), 1);
}

#[tokio::test]
async fn raw_union_and_subquery_reads_are_cached_and_invalidated() {
    let e = env("raw").await;
    let be = e.db.get_database_backend();
    let union = Statement::from_sql_and_values(
        be,
        "SELECT id FROM post WHERE category_id = $1 UNION SELECT id FROM post WHERE author_id = $2",
        [4.into(), 2.into()],
    );
    let sub = Statement::from_sql_and_values(
        be,
        "SELECT title FROM post WHERE category_id IN (SELECT id FROM category WHERE title = $1)",
        ["c3".into()],
    );
    for s in [&union, &sub] {
        e.db.query_all_raw(s.clone()).await.unwrap();
        e.db.query_all_raw(s.clone()).await.unwrap();
    }
    assert_eq!(e.take(), 2, "both cached");
    e.db.execute_raw(Statement::from_sql_and_values(
        be,
        "UPDATE post SET author_id = $1 WHERE id = $2",
        [2.into(), 1.into()],
    ))
    .await
    .unwrap();
    e.take();
    assert_eq!(e.db.query_all_raw(union.clone()).await.unwrap().len(), 4, "post 1 now has author 2");
    assert_eq!(e.take(), 1, "the union depends on author_id = 2");
    e.db.execute_unprepared("UPDATE category SET title = 'c3' WHERE id = 5").await.unwrap();
    e.take();
    e.db.query_all_raw(sub.clone()).await.unwrap();
    assert_eq!(e.take(), 1, "the subquery's table changed");
}

#[tokio::test]
async fn transactions_hide_writes_until_commit_and_rollbacks_leave_nothing_stale() {
    let e = env("txn").await;
    let title = |db: &cacheops_sea_orm::CachedConnection| {
        let db = db.clone();
        async move { post::Entity::find_by_id(1).one(&db).await.unwrap().unwrap().title }
    };
    assert_eq!(title(&e.db).await, "p1");
    let txn = e.db.begin().await.unwrap();
    let mut p = post::Entity::find_by_id(1).one(&txn).await.unwrap().unwrap().into_active_model();
    p.title = Set("in txn".into());
    p.update(&txn).await.unwrap();
    assert!(txn.is_dirty());
    assert_eq!(post::Entity::find_by_id(1).one(&txn).await.unwrap().unwrap().title, "in txn", "dirty txn reads bypass");
    assert_eq!(title(&e.db).await, "p1", "others see the old value before commit");
    txn.commit().await.unwrap();
    assert_eq!(title(&e.db).await, "in txn", "and the new one after");

    // Rollback.
    let txn = e.db.begin().await.unwrap();
    post::Entity::update_many()
        .col_expr(post::Column::Title, Expr::value("rolled back"))
        .filter(post::Column::Id.eq(1))
        .exec(&txn)
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(title(&e.db).await, "in txn");

    // A rolled-back savepoint.
    let txn = e.db.begin().await.unwrap();
    let sp = txn.begin().await.unwrap();
    post::Entity::update_many()
        .col_expr(post::Column::Title, Expr::value("sp"))
        .filter(post::Column::Id.eq(1))
        .exec(&sp)
        .await
        .unwrap();
    sp.rollback().await.unwrap();
    let sp2 = txn.begin().await.unwrap();
    post::Entity::update_many()
        .col_expr(post::Column::Title, Expr::value("sp2"))
        .filter(post::Column::Id.eq(2))
        .exec(&sp2)
        .await
        .unwrap();
    sp2.commit().await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(title(&e.db).await, "in txn");
    assert_eq!(
        post::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap().title,
        "sp2",
        "released savepoint's write invalidated at outer commit"
    );

    // A clean transaction's reads hit.
    title(&e.db).await;
    e.take();
    let txn = e.db.begin().await.unwrap();
    post::Entity::find_by_id(1).one(&txn).await.unwrap();
    assert_eq!(e.take(), 0, "clean transaction read is a hit");
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn no_invalidation_suppresses_and_explicit_invalidation_restores() {
    let e = env("noinv").await;
    assert_eq!(list(&e, 3).await.len(), 2);
    let db = e.db.clone();
    cacheops::no_invalidation(async move {
        post::ActiveModel {
            title: Set("quiet".into()),
            category_id: Set(3),
            author_id: Set(1),
            visible: Set(true),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
    })
    .await;
    e.take();
    assert_eq!(list(&e, 3).await.len(), 2, "suppressed: the cached list is served");
    assert_eq!(e.take(), 0);
    e.db.cache().invalidate_model("post").await.unwrap();
    assert_eq!(list(&e, 3).await.len(), 3);
}

#[tokio::test]
async fn concurrent_reader_sees_commit() {
    let e = env("conc").await;
    let db = e.db.clone();
    let read = move || {
        let db = db.clone();
        async move { post::Entity::find().filter(post::Column::CategoryId.eq(4)).count(&db).await.unwrap() }
    };
    assert_eq!(read().await, 2);
    let txn = e.db.begin().await.unwrap();
    post::ActiveModel {
        title: Set("x".into()),
        category_id: Set(4),
        author_id: Set(1),
        visible: Set(true),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .unwrap();
    let r = tokio::spawn(read()).await.unwrap();
    assert_eq!(r, 2, "uncommitted insert invisible");
    txn.commit().await.unwrap();
    assert_eq!(tokio::spawn(read()).await.unwrap(), 3);
}

#[tokio::test]
async fn foreign_key_cascades_invalidate_child_rows() {
    let e = env("cascade").await;
    assert_eq!(list(&e, 3).await.len(), 2);
    let tags_of_1 = || post_tag::Entity::find().filter(post_tag::Column::PostId.eq(1)).all(&e.db);
    assert_eq!(tags_of_1().await.unwrap().len(), 1);
    e.take();
    // ON DELETE CASCADE: deleting category 3 deletes its posts, and their post_tag rows.
    category::Entity::delete_by_id(3).exec(&e.db).await.unwrap();
    e.take();
    assert_eq!(list(&e, 3).await.len(), 0, "cascaded post deletions are invalidated");
    assert_eq!(tags_of_1().await.unwrap().len(), 0, "two-level cascade is invalidated");
}

async fn env_profiles(name: &str, profiles: cacheops::Profiles) -> Env {
    let cache = cacheops::Cache::builder()
        .redis_url(REDIS)
        .prefix(format!("sea-{name}-{}", std::process::id()))
        .degrade(false)
        .profiles(profiles)
        .build()
        .await
        .unwrap();
    env_with(name, cache).await
}

#[tokio::test]
async fn manual_cache_nocache_and_typed_caching() {
    use cacheops::{Profile, Profiles};
    use cacheops_sea_orm::SelectCacheExt;
    let profiles = Profiles::builder()
        .profile("post", Profile::builder()) // configured, nothing automatic
        .profile("category", Profile::builder().ops(["all"]))
        .build()
        .unwrap();
    let e = env_profiles("manual", profiles).await;
    let q = || post::Entity::find().filter(post::Column::CategoryId.eq(3)).order_by_asc(post::Column::Id);
    q().all(&e.db).await.unwrap();
    q().all(&e.db).await.unwrap();
    assert_eq!(e.take(), 2, "no automatic caching without ops");
    assert_eq!(q().cache().all(&e.db).await.unwrap().len(), 2);
    assert_eq!(q().cache().all(&e.db).await.unwrap().len(), 2);
    assert_eq!(q().cache().count(&e.db).await.unwrap(), 2);
    assert_eq!(q().cache().count(&e.db).await.unwrap(), 2);
    assert_eq!(e.take(), 2, ".cache() caches the list and the count");
    category::Entity::find_by_id(1).one(&e.db).await.unwrap();
    category::Entity::find_by_id(1).nocache().one(&e.db).await.unwrap();
    category::Entity::find_by_id(1).nocache().one(&e.db).await.unwrap();
    assert_eq!(e.take(), 3, ".nocache() always queries");

    let typed: Vec<post::Model> = e.db.typed_all(q()).await.unwrap();
    let again: Vec<post::Model> = e.db.typed_all(q()).await.unwrap();
    assert_eq!(typed, again);
    assert_eq!(e.db.typed_count(q()).await.unwrap(), 2);
    assert_eq!(e.db.typed_count(q()).await.unwrap(), 2);
    assert_eq!(e.db.typed_one(post::Entity::find_by_id(1)).await.unwrap().map(|p| p.id), Some(1));
    assert_eq!(e.take(), 1, "typed_* is .cache(): the list and the count were cached already");
    post::ActiveModel {
        title: sea_orm::ActiveValue::Set("t".into()),
        category_id: sea_orm::ActiveValue::Set(3),
        author_id: sea_orm::ActiveValue::Set(1),
        visible: sea_orm::ActiveValue::Set(true),
        ..Default::default()
    }
    .insert(&e.db)
    .await
    .unwrap();
    e.take();
    assert_eq!(e.db.typed_all(q()).await.unwrap().len(), 3);
    assert_eq!(q().cache().all(&e.db).await.unwrap().len(), 3);
    assert_eq!(e.db.typed_count(q()).await.unwrap(), 3);
    assert_eq!(e.take(), 2, "the list (typed_all and .cache().all share it) and the count invalidated by the insert");
    e.db.typed_one(post::Entity::find_by_id(1)).await.unwrap();
    assert_eq!(e.take(), 0, "post 1's typed get untouched");
}

#[tokio::test]
async fn db_agnostic_decides_whether_databases_share_entries() {
    use cacheops::{Profile, Profiles};
    for agnostic in [true, false] {
        let profiles =
            Profiles::builder().profile("*", Profile::builder().ops(["all"]).db_agnostic(agnostic)).build().unwrap();
        let name = if agnostic { "agn" } else { "nagn" };
        let a = env_profiles(name, profiles).await;
        // Two database names over connections that resolve names alike (same search_path: a
        // connection with another search_path never shares entries, whatever db_agnostic says,
        // see `hidden_deps.rs`).
        let db_a = cacheops_sea_orm::CachedConnection::with_db_name(a.raw.clone(), a.db.cache().clone(), "a");
        let db_b = cacheops_sea_orm::CachedConnection::with_db_name(a.raw.clone(), a.db.cache().clone(), "b");
        db_a.load_catalog().await.unwrap();
        db_b.load_catalog().await.unwrap();
        post::Entity::find_by_id(1).one(&db_a).await.unwrap();
        a.take();
        post::Entity::find_by_id(1).one(&db_b).await.unwrap();
        let b_queries = a.take();
        if agnostic {
            assert_eq!(b_queries, 0, "db_agnostic: database b is served database a's entry");
        } else {
            assert_eq!(b_queries, 1, "not db_agnostic: each database has its own entries");
        }
    }
}

#[tokio::test]
async fn cache_on_save_primes_the_next_get() {
    use cacheops::{Profile, Profiles};
    let profiles = Profiles::builder()
        .profile("post", Profile::builder().ops(["get"]).cache_on_save(""))
        .profile("category", Profile::builder().ops(["get"]).cache_on_save("title"))
        .build()
        .unwrap();
    let e = env_profiles("onsave", profiles).await;
    let mut p = post::Entity::find_by_id(1).one(&e.db).await.unwrap().unwrap().into_active_model();
    p.title = Set("saved".into());
    p.update(&e.db).await.unwrap();
    e.take();
    let got = post::Entity::find_by_id(1).one(&e.db).await.unwrap().unwrap();
    assert_eq!(got.title, "saved");
    assert_eq!(e.take(), 0, "the saved row was cached for the next get by primary key");

    let inserted = post::ActiveModel {
        title: Set("new".into()),
        category_id: Set(4),
        author_id: Set(1),
        visible: Set(true),
        ..Default::default()
    }
    .insert(&e.db)
    .await
    .unwrap();
    e.take();
    assert_eq!(post::Entity::find_by_id(inserted.id).one(&e.db).await.unwrap().unwrap(), inserted);
    assert_eq!(e.take(), 0, "an inserted row too");

    let mut c = category::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap().into_active_model();
    c.title = Set("renamed".into());
    c.update(&e.db).await.unwrap();
    e.take();
    let by_title = category::Entity::find().filter(category::Column::Title.eq("renamed")).one(&e.db).await.unwrap();
    assert_eq!(by_title.map(|c| c.id), Some(2));
    assert_eq!(e.take(), 0, "cached for a get by the named column");

    // Inside a transaction: cached after COMMIT, and a later change still invalidates it.
    let txn = e.db.begin().await.unwrap();
    let mut p = post::Entity::find_by_id(2).one(&txn).await.unwrap().unwrap().into_active_model();
    p.title = Set("txn saved".into());
    p.update(&txn).await.unwrap();
    txn.commit().await.unwrap();
    e.take();
    assert_eq!(post::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap().title, "txn saved");
    assert_eq!(e.take(), 0);
    post::Entity::update_many()
        .col_expr(post::Column::Title, Expr::value("bulk"))
        .filter(post::Column::Id.eq(2))
        .exec(&e.db)
        .await
        .unwrap();
    e.take();
    assert_eq!(post::Entity::find_by_id(2).one(&e.db).await.unwrap().unwrap().title, "bulk");
    assert_eq!(e.take(), 1);
}

#[tokio::test]
async fn prefix_callback_sees_database_and_tables() {
    let e = env("prefix").await;
    // post and category share a prefix per database; tag lives alone.
    let db = e.db.clone().with_prefix_fn(|q| {
        let group = if q.tables.iter().all(|t| *t == "tag") {
            "tags"
        } else if q.tables.iter().all(|t| *t != "tag") {
            "blog"
        } else {
            "mixed"
        };
        format!("p-{}-{group}-{}", q.db, std::process::id())
    });
    let by_cat = || post::Entity::find_by_id(1).find_also_related(category::Entity).one(&db);
    by_cat().await.unwrap();
    by_cat().await.unwrap();
    tag::Entity::find_by_id(1).one(&db).await.unwrap();
    tag::Entity::find_by_id(1).one(&db).await.unwrap();
    assert_eq!(e.take(), 2, "post+category and tag are cached under their prefixes");
    let base = db.cache().keys().base().to_owned();
    assert!(!base.contains("blog"), "the connection's own cache keeps its prefix");

    // A read across prefixes (post joined with tag) is not cached.
    let dbr = &db;
    let across = || async move {
        let p = post::Entity::find_by_id(1).one(dbr).await.unwrap().unwrap();
        p.find_related(tag::Entity).all(dbr).await.unwrap()
    };
    across().await;
    across().await;
    assert_eq!(e.take(), 3, "the post get is cached (1 query for two calls), the join spanning prefixes is not (2)");

    // Writes invalidate under the prefix of the table they change.
    let mut c3 = category::Entity::find_by_id(3).one(&db).await.unwrap().unwrap().into_active_model();
    c3.title = Set("renamed".into());
    c3.update(&db).await.unwrap();
    e.take();
    let (_, c) = by_cat().await.unwrap().unwrap();
    assert_eq!(c.unwrap().title, "renamed");
    assert_eq!(e.take(), 1);
    tag::Entity::find_by_id(1).one(&db).await.unwrap();
    assert_eq!(e.take(), 0, "the tags prefix is untouched");
}

#[tokio::test]
async fn local_get_keeps_a_copy_that_other_processes_invalidate() {
    use cacheops::{Profile, Profiles};
    let prefix = format!("sea-local-{}", std::process::id());
    let build = || {
        let prefix = prefix.clone();
        async move {
            cacheops::Cache::builder()
                .redis_url(REDIS)
                .prefix(prefix)
                .degrade(false)
                .profiles(
                    Profiles::builder()
                        .profile("post", Profile::builder().ops(["get"]).local_get(true))
                        .build()
                        .unwrap(),
                )
                .build()
                .await
                .unwrap()
        }
    };
    let e = env_with("local", build().await).await;
    // "Another process": its own Cache (own local copies) on the same Redis prefix and database.
    let other = cacheops_sea_orm::CachedConnection::new(e.raw.clone(), build().await);
    other.load_catalog().await.unwrap();
    post::Entity::find_by_id(1).one(&e.db).await.unwrap();
    assert_eq!(e.db.cache().local_copies(), 1);
    e.take();
    assert_eq!(post::Entity::find_by_id(1).one(&e.db).await.unwrap().unwrap().title, "p1");
    assert_eq!(e.take(), 0, "served from the local copy");
    let mut p = post::Entity::find_by_id(1).one(&other).await.unwrap().unwrap().into_active_model();
    p.title = Set("changed elsewhere".into());
    p.update(&other).await.unwrap();
    e.take();
    assert_eq!(post::Entity::find_by_id(1).one(&e.db).await.unwrap().unwrap().title, "changed elsewhere");
    assert_eq!(e.take(), 1, "the local copy was invalidated by the other process's write");
    post::Entity::find_by_id(1).one(&e.db).await.unwrap();
    assert_eq!(e.take(), 0);
}

#[tokio::test]
async fn partial_returning_stays_granular() {
    let e = env("partret").await;
    list(&e, 3).await;
    list(&e, 4).await;
    e.take();
    let be = e.db.get_database_backend();
    let rows =
        e.db.query_all_raw(Statement::from_sql_and_values(
            be,
            "UPDATE post SET title = $1 WHERE id = $2 RETURNING id",
            ["t".into(), 1.into()],
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    e.take();
    list(&e, 4).await;
    assert_eq!(e.take(), 0, "a partial RETURNING does not invalidate the whole table");
    assert_eq!(list(&e, 3).await[0].title, "t");
    assert_eq!(e.take(), 1);
}
