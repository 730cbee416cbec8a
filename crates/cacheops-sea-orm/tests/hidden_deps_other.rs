//! Dependencies the SQL hides, on SQLite and MariaDB: identifier case, views, triggers, other
//! databases. Every case caches a read (asserting the hit), writes through the cached
//! connection, and compares the cached read with the raw connection's.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cacheops::{Cache, Profile, Profiles};
use cacheops_sea_orm::CachedConnection;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

struct Env {
    db: CachedConnection,
    raw: DatabaseConnection,
    queries: Arc<AtomicUsize>,
}

impl Env {
    async fn new(mut raw: DatabaseConnection, setup: &[&str]) -> Env {
        for sql in setup {
            raw.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let queries = common::count_selects(&mut raw);
        let cache = Cache::builder()
            .profiles(Profiles::builder().profile("*", Profile::builder().ops(["all"])).build().expect("profiles"))
            .build()
            .await
            .expect("cache");
        let db = CachedConnection::new(raw.clone(), cache);
        db.load_catalog().await.expect("catalog");
        Env { db, raw, queries }
    }

    async fn rows<C: ConnectionTrait>(&self, db: &C, sql: &str) -> Vec<String> {
        common::first_column(db, sql).await
    }

    async fn cache(&self, sql: &str) -> Vec<String> {
        let first = self.rows(&self.db, sql).await;
        self.queries.store(0, Ordering::SeqCst);
        assert_eq!(self.rows(&self.db, sql).await, first);
        assert_eq!(self.queries.swap(0, Ordering::SeqCst), 0, "{sql}: the second read must be a hit");
        first
    }

    async fn fresh(&self, sql: &str) -> Vec<String> {
        let cached = self.rows(&self.db, sql).await;
        let raw = self.rows(&self.raw, sql).await;
        assert_eq!(cached, raw, "{sql}: stale read");
        raw
    }

    async fn exec(&self, sql: &str) {
        self.db.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn sqlite_names_views_and_triggers() {
    let raw = Database::connect("sqlite::memory:").await.expect("sqlite");
    let e = Env::new(
        raw,
        &[
            r#"CREATE TABLE "T" (id INTEGER PRIMARY KEY, "Name" TEXT)"#,
            "INSERT INTO t VALUES (1, 'a')",
            "CREATE TABLE audit (n INTEGER)",
            "INSERT INTO audit VALUES (0)",
            "CREATE TRIGGER t_audit AFTER UPDATE ON t BEGIN UPDATE audit SET n = n + 1; END",
            "CREATE VIEW tv AS SELECT id, name FROM t",
        ],
    )
    .await;
    assert_eq!(e.cache(r#"SELECT "Name" FROM "T" WHERE "ID" = 1"#).await, vec!["a"]);
    let audit = "SELECT n FROM audit";
    assert_eq!(e.cache(audit).await, vec!["0"]);
    let view = "SELECT name FROM tv WHERE id = 1";
    assert_eq!(e.cache(view).await, vec!["a"]);
    e.exec("UPDATE t SET name = 'b' WHERE id = 1").await;
    assert_eq!(e.fresh(r#"SELECT "Name" FROM "T" WHERE "ID" = 1"#).await, vec!["b"], "ASCII case is one name");
    assert_eq!(e.fresh(audit).await, vec!["1"], "the trigger's table");
    assert_eq!(e.fresh(view).await, vec!["b"], "the view's table");
}

#[tokio::test]
async fn mariadb_names_views_triggers_and_other_databases() {
    let name = format!("cacheops_hd{}", std::process::id());
    let other = format!("{name}_o");
    let admin = Database::connect("mysql://root@127.0.0.1:3306/mysql")
        .await
        .expect("MariaDB must be running on 127.0.0.1:3306 (see .ci/run)");
    admin
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}; DROP DATABASE IF EXISTS {other}; CREATE DATABASE {other};
             CREATE TABLE {other}.t (id int PRIMARY KEY, name varchar(10)); INSERT INTO {other}.t VALUES (1, 'o');"
        ))
        .await
        .unwrap();
    let raw = Database::connect(format!("mysql://root@127.0.0.1:3306/{name}")).await.expect("connect");
    let e = Env::new(
        raw,
        &[
            "CREATE TABLE t (id int PRIMARY KEY, name varchar(10) COLLATE utf8mb4_bin)",
            "INSERT INTO t VALUES (1, 'a')",
            "CREATE TABLE audit (n int)",
            "INSERT INTO audit VALUES (0)",
            "CREATE TRIGGER t_audit AFTER UPDATE ON t FOR EACH ROW UPDATE audit SET n = n + 1",
            "CREATE VIEW tv AS SELECT id, name FROM t",
        ],
    )
    .await;
    let quoted = "SELECT `NAME` FROM `t` WHERE `ID` = 1";
    assert_eq!(e.cache(quoted).await, vec!["a"]);
    let audit = "SELECT n FROM audit";
    e.cache(audit).await;
    let view = "SELECT name FROM tv WHERE id = 1";
    e.cache(view).await;
    e.exec("UPDATE t SET Name = 'b' WHERE Id = 1").await;
    assert_eq!(e.fresh(quoted).await, vec!["b"], "column names are case-insensitive");
    assert_eq!(e.fresh(audit).await, vec!["1"]);
    assert_eq!(e.fresh(view).await, vec!["b"]);
    // Another database's table of the same name.
    let theirs = format!("SELECT name FROM {other}.t WHERE id = 1");
    assert_eq!(e.rows(&e.db, &theirs).await, vec!["o"]);
    e.exec(&format!("UPDATE {other}.t SET name = 'p' WHERE id = 1")).await;
    assert_eq!(e.fresh(&theirs).await, vec!["p"]);
    admin.execute_unprepared(&format!("DROP DATABASE {name}; DROP DATABASE {other}")).await.unwrap();
}
