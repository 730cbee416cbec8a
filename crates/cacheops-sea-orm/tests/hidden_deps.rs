//! Dependencies the SQL hides, against real PostgreSQL and Redis: every case caches a read
//! (asserting the hit), performs a write through the cached connection, and compares the cached
//! read with the raw connection's.

mod common;

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use common::*;
use sea_orm::{ConnectionTrait, Database};

/// The first column of every row, as text.
async fn rows<C: ConnectionTrait>(db: &C, sql: &str) -> Vec<String> {
    first_column(db, sql).await
}

/// Reads through the cache twice, asserting the second read is a hit.
async fn cache(e: &Env, sql: &str) -> Vec<String> {
    let first = rows(&e.db, sql).await;
    e.take();
    assert_eq!(rows(&e.db, sql).await, first, "{sql}");
    assert_eq!(e.take(), 0, "{sql}: the second read must be a hit");
    first
}

/// The cached read equals the raw read.
async fn fresh(e: &Env, sql: &str) -> Vec<String> {
    let cached = rows(&e.db, sql).await;
    let raw = rows(&e.raw, sql).await;
    assert_eq!(cached, raw, "{sql}: stale read");
    raw
}

async fn exec(e: &Env, sql: &str) {
    e.db.execute_unprepared(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
}

#[tokio::test]
async fn schema_qualified_names_are_the_same_table() {
    let e = env_all("schema").await;
    let read = format!("SELECT title FROM {}.post WHERE id = 1", e.schema);
    cache(&e, &read).await;
    exec(&e, "UPDATE post SET title = 'renamed' WHERE id = 1").await;
    assert_eq!(fresh(&e, &read).await, vec!["renamed"]);
    let read = "SELECT title FROM post WHERE id = 2";
    cache(&e, read).await;
    exec(&e, &format!("UPDATE {}.post SET title = 'renamed2' WHERE id = 2", e.schema)).await;
    assert_eq!(fresh(&e, read).await, vec!["renamed2"]);
}

#[tokio::test]
async fn search_path_separates_and_set_search_path_bypasses() {
    let e = env_all("sp").await;
    // A second schema with a `post` of other contents, seen through another connection that
    // shares the cache and the database name.
    let other = format!("{}_b", e.schema);
    e.raw
        .execute_unprepared(&format!(
            "DROP SCHEMA IF EXISTS {other} CASCADE; CREATE SCHEMA {other};
             CREATE TABLE {other}.post (id int PRIMARY KEY, title text); INSERT INTO {other}.post VALUES (1, 'other');"
        ))
        .await
        .unwrap();
    let raw_b = Database::connect(format!("{PG}?options=-c%20search_path%3D{other}")).await.unwrap();
    let db_b = CachedConnection::new(raw_b.clone(), e.db.cache().clone());
    let read = "SELECT title FROM post WHERE id = 1";
    assert_eq!(cache(&e, read).await, vec!["p1"]);
    assert_eq!(rows(&db_b, read).await, vec!["other"], "another search_path never sees the first schema's entry");
    // SET search_path through the connection: from then on its reads bypass the cache.
    let mut opts = sea_orm::ConnectOptions::new(format!("{PG}?options=-c%20search_path%3D{}", e.schema));
    opts.max_connections(1).min_connections(1);
    let single = Database::connect(opts).await.unwrap();
    let db_s = CachedConnection::new(single, e.db.cache().clone());
    assert_eq!(rows(&db_s, read).await, vec!["p1"]);
    db_s.execute_unprepared(&format!("SET search_path = {other}")).await.unwrap();
    assert_eq!(
        rows(&db_s, read).await,
        vec!["other"],
        "after SET search_path the cached connection reads what the database says"
    );
    assert_eq!(rows(&db_s, read).await, vec!["other"]);
    e.raw.execute_unprepared(&format!("DROP SCHEMA {other} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn truncate_cascade_reaches_every_referencing_table() {
    let e = env_all("trunc").await;
    e.raw
        .execute_unprepared(
            "CREATE TABLE note (id int PRIMARY KEY, category_id int REFERENCES category ON DELETE NO ACTION);
             INSERT INTO note VALUES (1, 3);",
        )
        .await
        .unwrap();
    e.db.load_catalog().await.unwrap();
    let read = "SELECT count(*)::text FROM note WHERE category_id = 3";
    assert_eq!(cache(&e, read).await, vec!["1"]);
    let posts = "SELECT count(*)::text FROM post WHERE category_id = 3";
    cache(&e, posts).await;
    exec(&e, "TRUNCATE category CASCADE").await;
    assert_eq!(fresh(&e, read).await, vec!["0"]);
    assert_eq!(fresh(&e, posts).await, vec!["0"]);
}

#[tokio::test]
async fn ddl_through_the_connection_reloads_the_foreign_key_graph() {
    let e = env_all("ddl").await;
    exec(&e, "CREATE TABLE comment (id int PRIMARY KEY, post_id int)").await;
    exec(&e, "INSERT INTO comment VALUES (1, 1)").await;
    exec(&e, "ALTER TABLE comment ADD FOREIGN KEY (post_id) REFERENCES post ON DELETE CASCADE").await;
    let read = "SELECT count(*)::text FROM comment WHERE id = 1";
    assert_eq!(cache(&e, read).await, vec!["1"]);
    exec(&e, "DELETE FROM post WHERE id = 1").await;
    assert_eq!(fresh(&e, read).await, vec!["0"]);
}

#[tokio::test]
async fn generated_columns_follow_their_sources() {
    let e = env_all("gen").await;
    exec(&e, "CREATE TABLE g (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED)").await;
    exec(&e, "INSERT INTO g (id, a) VALUES (1, 1)").await;
    let read = "SELECT id::text FROM g WHERE b = 4";
    assert!(cache(&e, read).await.is_empty());
    exec(&e, "UPDATE g SET a = 2 WHERE id = 1").await;
    assert_eq!(fresh(&e, read).await, vec!["1"]);
}

#[tokio::test]
async fn column_names_with_key_separators() {
    let e = env_all("sep").await;
    exec(&e, r#"CREATE TABLE s (id int PRIMARY KEY, a int, b int, "a,b" int, "a=1&b" int)"#).await;
    exec(&e, r#"INSERT INTO s VALUES (1, 1, 1, 5, 5)"#).await;
    let read = r#"SELECT id::text FROM s WHERE "a,b" = 1"#;
    assert!(cache(&e, read).await.is_empty());
    let read2 = r#"SELECT id::text FROM s WHERE "a=1&b" = 7"#;
    assert!(cache(&e, read2).await.is_empty());
    exec(&e, r#"UPDATE s SET "a,b" = 1, "a=1&b" = 7 WHERE id = 1"#).await;
    assert_eq!(fresh(&e, read).await, vec!["1"]);
    assert_eq!(fresh(&e, read2).await, vec!["1"]);
}

#[tokio::test]
async fn views_depend_on_their_tables_and_writes_through_them_invalidate() {
    let e = env_all("view").await;
    exec(&e, "CREATE VIEW visible_post AS SELECT p.id, p.title, c.title AS category FROM post p JOIN category c ON c.id = p.category_id WHERE p.visible").await;
    let read = "SELECT title FROM visible_post WHERE id = 1";
    assert_eq!(cache(&e, read).await, vec!["p1"]);
    exec(&e, "UPDATE post SET title = 'through the base table' WHERE id = 1").await;
    assert_eq!(fresh(&e, read).await, vec!["through the base table"]);
    let by_cat = "SELECT category FROM visible_post WHERE id = 1";
    cache(&e, by_cat).await;
    exec(&e, "UPDATE category SET title = 'cat renamed' WHERE id = 3").await;
    assert_eq!(fresh(&e, by_cat).await, vec!["cat renamed"]);
    // An updatable view: the write changes `post`.
    exec(&e, "CREATE VIEW simple_post AS SELECT id, title FROM post").await;
    let base = "SELECT title FROM post WHERE id = 3";
    cache(&e, base).await;
    exec(&e, "UPDATE simple_post SET title = 'through the view' WHERE id = 3").await;
    assert_eq!(fresh(&e, base).await, vec!["through the view"]);
    // A materialized view changes on REFRESH.
    exec(&e, "CREATE MATERIALIZED VIEW post_count AS SELECT count(*) AS n FROM post").await;
    let mv = "SELECT n::text FROM post_count";
    assert_eq!(cache(&e, mv).await, vec!["4"]);
    exec(&e, "INSERT INTO post (title, category_id, author_id, visible) VALUES ('p5', 3, 1, true)").await;
    exec(&e, "REFRESH MATERIALIZED VIEW post_count").await;
    assert_eq!(fresh(&e, mv).await, vec!["5"]);
}

#[tokio::test]
async fn inheritance_and_partitions() {
    let e = env_all("inh").await;
    exec(&e, "CREATE TABLE animal (id int, name text)").await;
    exec(&e, "CREATE TABLE dog (good bool) INHERITS (animal)").await;
    exec(&e, "INSERT INTO dog (id, name, good) VALUES (1, 'rex', true)").await;
    let parent = "SELECT name FROM animal WHERE id = 1";
    assert_eq!(cache(&e, parent).await, vec!["rex"]);
    exec(&e, "UPDATE dog SET name = 'max' WHERE id = 1").await;
    assert_eq!(fresh(&e, parent).await, vec!["max"], "a write to the child reaches the parent's reads");
    let child = "SELECT name FROM dog WHERE id = 1";
    cache(&e, child).await;
    exec(&e, "UPDATE animal SET name = 'bo' WHERE id = 1").await;
    assert_eq!(fresh(&e, child).await, vec!["bo"], "a write to the parent reaches the child's reads");

    exec(&e, "CREATE TABLE event (id int, kind int) PARTITION BY LIST (kind)").await;
    exec(&e, "CREATE TABLE event_a PARTITION OF event FOR VALUES IN (1)").await;
    exec(&e, "CREATE TABLE event_b PARTITION OF event FOR VALUES IN (2)").await;
    let part = "SELECT count(*)::text FROM event_b WHERE id = 7";
    assert_eq!(cache(&e, part).await, vec!["0"]);
    exec(&e, "INSERT INTO event VALUES (7, 2)").await;
    assert_eq!(fresh(&e, part).await, vec!["1"]);
    let whole = "SELECT count(*)::text FROM event WHERE id = 8";
    cache(&e, whole).await;
    exec(&e, "INSERT INTO event_a VALUES (8, 1)").await;
    assert_eq!(fresh(&e, whole).await, vec!["1"]);
}

#[tokio::test]
async fn triggers_and_rules_reach_the_tables_they_touch() {
    let e = env_all("trig").await;
    exec(&e, "CREATE TABLE audit (n int)").await;
    exec(&e, "INSERT INTO audit VALUES (0)").await;
    exec(
        &e,
        "CREATE FUNCTION bump_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE audit SET n = n + 1; RETURN NEW; END $$",
    )
    .await;
    exec(&e, "CREATE TRIGGER post_audit AFTER UPDATE ON post FOR EACH ROW EXECUTE FUNCTION bump_audit()").await;
    let read = "SELECT n::text FROM audit";
    assert_eq!(cache(&e, read).await, vec!["0"]);
    exec(&e, "UPDATE post SET title = 'x' WHERE id = 1").await;
    assert_eq!(fresh(&e, read).await, vec!["1"]);
    // A BEFORE trigger rewrites the written row.
    exec(
        &e,
        "CREATE FUNCTION upper_title() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.title := upper(NEW.title); RETURN NEW; END $$",
    )
    .await;
    exec(&e, "CREATE TRIGGER post_upper BEFORE INSERT OR UPDATE ON post FOR EACH ROW EXECUTE FUNCTION upper_title()")
        .await;
    let upper = "SELECT id::text FROM post WHERE title = 'LOUD'";
    assert!(cache(&e, upper).await.is_empty());
    exec(&e, "UPDATE post SET title = 'loud' WHERE id = 2").await;
    assert_eq!(fresh(&e, upper).await, vec!["2"]);
    // A rule.
    exec(&e, "CREATE TABLE log (n int)").await;
    exec(&e, "CREATE RULE tag_log AS ON INSERT TO tag DO ALSO INSERT INTO log VALUES (1)").await;
    let logged = "SELECT count(*)::text FROM log";
    assert_eq!(cache(&e, logged).await, vec!["0"]);
    exec(&e, "INSERT INTO tag (name) VALUES ('go')").await;
    assert_eq!(fresh(&e, logged).await, vec!["1"]);
}

#[tokio::test]
async fn prepared_statements_executed_through_the_connection() {
    let e = env_all("prep").await;
    let read = "SELECT title FROM post WHERE id = 4";
    cache(&e, read).await;
    // One pooled connection for PREPARE and EXECUTE: inside a transaction.
    let txn = sea_orm::TransactionTrait::begin(&e.db).await.unwrap();
    txn.execute_unprepared("PREPARE rename_post (int) AS UPDATE post SET title = 'prepared' WHERE id = $1")
        .await
        .unwrap();
    txn.execute_unprepared("EXECUTE rename_post (4)").await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(fresh(&e, read).await, vec!["prepared"]);
}

#[tokio::test]
async fn reads_that_match_nothing_are_cached_and_emit_read_events() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let c = Cache::builder()
        .redis_url(REDIS)
        .prefix(unique("hd-never"))
        .degrade(false)
        .profiles(Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles"))
        .on_read(move |ev| seen.lock().unwrap().push(format!("{:?}", ev.outcome)))
        .build()
        .await
        .expect("Redis");
    let e = env_with("never", c).await;
    let read = "SELECT title FROM post WHERE 1 = 2";
    assert!(cache(&e, read).await.is_empty());
    let read = "SELECT title FROM post WHERE id = 1 AND id = 2";
    assert!(cache(&e, read).await.is_empty());
    let outcomes = events.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| o.contains("Hit")).count(), 2, "{outcomes:?}");
    // Still reached by a table-level change.
    exec(&e, "TRUNCATE post CASCADE").await;
    assert!(fresh(&e, "SELECT title FROM post WHERE 1 = 2").await.is_empty());
}

#[tokio::test]
async fn call_of_a_procedure_invalidates() {
    let e = env_all("call").await;
    exec(&e, "CREATE PROCEDURE rename_post(i int) LANGUAGE sql AS $$ UPDATE post SET title = 'called' WHERE id = i $$")
        .await;
    let read = "SELECT title FROM post WHERE id = 3";
    cache(&e, read).await;
    exec(&e, "CALL rename_post(3)").await;
    assert_eq!(fresh(&e, read).await, vec!["called"]);
}

#[tokio::test]
async fn functions_that_read_or_write_tables() {
    let e = env_all("func").await;
    exec(&e, "CREATE FUNCTION cat_title(i int) RETURNS text STABLE LANGUAGE sql AS $$ SELECT title FROM category WHERE id = i $$").await;
    exec(&e, "CREATE FUNCTION bump(i int) RETURNS int LANGUAGE sql AS $$ UPDATE post SET title = 'bumped' WHERE id = i RETURNING id $$").await;
    // A function that reads a table the statement does not name: the read is not cached.
    let via_fn = "SELECT cat_title(3)";
    assert_eq!(rows(&e.db, via_fn).await, vec!["c3"]);
    exec(&e, "UPDATE category SET title = 'c3 renamed' WHERE id = 3").await;
    assert_eq!(fresh(&e, via_fn).await, vec!["c3 renamed"]);
    let in_where = "SELECT id::text FROM post WHERE cat_title(category_id) = 'c3 renamed' ORDER BY id";
    assert_eq!(rows(&e.db, in_where).await, vec!["1", "2"]);
    exec(&e, "UPDATE category SET title = 'c3 again' WHERE id = 3").await;
    assert!(fresh(&e, in_where).await.is_empty());
    // A function that writes: the SELECT is a write.
    let read = "SELECT title FROM post WHERE id = 1";
    assert_eq!(cache(&e, read).await, vec!["p1"]);
    assert_eq!(rows(&e.db, "SELECT bump(1)::text").await, vec!["1"]);
    assert_eq!(fresh(&e, read).await, vec!["bumped"]);
    // Built-in functions keep reads cacheable.
    cache(&e, "SELECT upper(title) FROM post WHERE id = 2").await;
}

#[tokio::test]
async fn cached_as_auto_records_reads_its_profile_does_not_cache() {
    let cache = Cache::builder()
        .redis_url(REDIS)
        .prefix(unique("hd-auto"))
        .degrade(false)
        .profiles(Profiles::builder().profile("*", Profile::builder()).build().expect("profiles")) // no automatic caching
        .build()
        .await
        .expect("Redis");
    let e = env_with("auto", cache.clone()).await;
    let f = cache.cached_as_auto("titles");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = |sql: &'static str| {
        let (f, db, calls) = (f.clone(), e.db.clone(), calls.clone());
        async move {
            f.get_or_compute(&sql, || async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, cacheops::Error>(rows(&db, sql).await)
            })
            .await
            .unwrap()
        }
    };
    let read = "SELECT title FROM post WHERE id = 1";
    assert_eq!(run(read).await, vec!["p1"]);
    assert_eq!(run(read).await, vec!["p1"]);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the function's result is a hit");
    exec(&e, "UPDATE post SET title = 'auto' WHERE id = 1").await;
    assert_eq!(run(read).await, vec!["auto"], "the write reaches the function through the recorded read");
    // A read whose dependencies cannot be known: the function's result is never stored.
    let unknown = "SELECT title FROM post WHERE id = 2 AND now() IS NOT NULL";
    run(unknown).await;
    run(unknown).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn tables_of_schemas_outside_the_search_path() {
    let e = env_all("foreign").await;
    let other = format!("{}_o", e.schema);
    e.raw
        .execute_unprepared(&format!(
            "DROP SCHEMA IF EXISTS {other} CASCADE; CREATE SCHEMA {other};
             CREATE TABLE {other}.post (id int PRIMARY KEY, title text); INSERT INTO {other}.post VALUES (1, 'o1');"
        ))
        .await
        .unwrap();
    // A read of another schema's table is not cached; a write to it reaches every read of `post`.
    let theirs = format!("SELECT title FROM {other}.post WHERE id = 1");
    assert_eq!(rows(&e.db, &theirs).await, vec!["o1"]);
    e.take();
    rows(&e.db, &theirs).await;
    assert_eq!(e.take(), 1, "not cached");
    let ours = "SELECT title FROM post WHERE id = 1";
    cache(&e, ours).await;
    exec(&e, &format!("UPDATE {other}.post SET title = 'o2' WHERE id = 1")).await;
    assert_eq!(fresh(&e, &theirs).await, vec!["o2"]);
    e.take();
    rows(&e.db, ours).await;
    assert_eq!(e.take(), 1, "an unattributed write invalidates the namespace");
    e.raw.execute_unprepared(&format!("DROP SCHEMA {other} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn relations_created_behind_the_connections_back_are_not_cached_until_reloaded() {
    let e = env_all("behind").await;
    e.raw.execute_unprepared("CREATE VIEW late_view AS SELECT id, title FROM post").await.unwrap();
    let read = "SELECT title FROM late_view WHERE id = 1";
    assert_eq!(rows(&e.db, read).await, vec!["p1"]);
    e.take();
    rows(&e.db, read).await;
    assert_eq!(e.take(), 1, "an unknown relation (it may be a view) is not cached");
    exec(&e, "UPDATE post SET title = 'seen' WHERE id = 1").await;
    assert_eq!(fresh(&e, read).await, vec!["seen"]);
    // Once the catalog knows it, it is cached and depends on its tables.
    e.db.load_catalog().await.unwrap();
    cache(&e, read).await;
    exec(&e, "UPDATE post SET title = 'seen again' WHERE id = 1").await;
    assert_eq!(fresh(&e, read).await, vec!["seen again"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_statements_read_the_catalog_once() {
    let e = env_all("once").await;
    let catalog_reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = catalog_reads.clone();
    let mut raw = e.raw.clone();
    raw.set_metric_callback(move |info| {
        if info.statement.sql.contains("current_schemas(false)") && info.statement.sql.contains("current_setting") {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let db = CachedConnection::new(raw, e.db.cache().clone());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move { rows(&db, &format!("SELECT title FROM post WHERE id = {}", i % 4 + 1)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 1);
    }
    assert_eq!(catalog_reads.load(std::sync::atomic::Ordering::SeqCst), 1);
}
