//! Foreign-key cascades: a DELETE (or key UPDATE) on a parent table changes child rows the
//! statement never names (`ON DELETE CASCADE`, `SET NULL`, `SET DEFAULT`). Those child tables are
//! invalidated as a whole (their changed rows are not known without a second pre-image).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// One foreign key with an action that changes child rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForeignKey {
    pub(crate) child: String,
    pub(crate) parent: String,
    /// The child changes when parent rows are deleted.
    pub(crate) on_delete: bool,
    /// The child changes when parent keys are updated.
    pub(crate) on_update: bool,
}

/// The foreign-key graph of a database, loaded on first use and reloaded after DDL.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    fks: RwLock<Option<Arc<Vec<ForeignKey>>>>,
}

fn acts(action: &str) -> bool {
    let a = action.trim().to_ascii_lowercase();
    matches!(a.as_str(), "c" | "n" | "d" | "cascade" | "set null" | "set default")
}

impl Graph {
    /// Forgets the graph (after DDL).
    pub(crate) fn reset(&self) {
        if let Ok(mut g) = self.fks.write() {
            *g = None;
        }
    }

    async fn load<C: ConnectionTrait>(&self, conn: &C) -> Result<Arc<Vec<ForeignKey>>, DbErr> {
        if let Ok(g) = self.fks.read()
            && let Some(fks) = g.as_ref()
        {
            return Ok(fks.clone());
        }
        let backend = conn.get_database_backend();
        let mut fks = Vec::new();
        match backend {
            DbBackend::Postgres => {
                let sql = "SELECT c.relname::text AS child, p.relname::text AS parent, \
                           con.confdeltype::text AS del, con.confupdtype::text AS upd \
                           FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                           JOIN pg_class p ON p.oid = con.confrelid \
                           WHERE con.contype = 'f' AND pg_catalog.pg_table_is_visible(c.oid)";
                for row in conn.query_all_raw(Statement::from_string(backend, sql)).await? {
                    fks.push(ForeignKey {
                        child: row.try_get::<String>("", "child")?,
                        parent: row.try_get::<String>("", "parent")?,
                        on_delete: acts(&row.try_get::<String>("", "del")?),
                        on_update: acts(&row.try_get::<String>("", "upd")?),
                    });
                }
            }
            DbBackend::Sqlite => {
                let tables = conn
                    .query_all_raw(Statement::from_string(
                        backend,
                        "SELECT name FROM sqlite_master WHERE type = 'table'",
                    ))
                    .await?;
                for t in tables {
                    let child: String = t.try_get("", "name")?;
                    let pragma = format!("PRAGMA foreign_key_list(\"{}\")", child.replace('"', "\"\""));
                    for row in conn.query_all_raw(Statement::from_string(backend, pragma)).await? {
                        fks.push(ForeignKey {
                            child: child.to_ascii_lowercase(),
                            parent: row.try_get::<String>("", "table")?.to_ascii_lowercase(),
                            on_delete: acts(&row.try_get::<String>("", "on_delete")?),
                            on_update: acts(&row.try_get::<String>("", "on_update")?),
                        });
                    }
                }
            }
            _ => {
                let sql = "SELECT TABLE_NAME AS child, REFERENCED_TABLE_NAME AS parent, \
                           DELETE_RULE AS del, UPDATE_RULE AS upd \
                           FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()";
                for row in conn.query_all_raw(Statement::from_string(backend, sql)).await? {
                    fks.push(ForeignKey {
                        child: row.try_get::<String>("", "child")?.to_ascii_lowercase(),
                        parent: row.try_get::<String>("", "parent")?.to_ascii_lowercase(),
                        on_delete: acts(&row.try_get::<String>("", "del")?),
                        on_update: acts(&row.try_get::<String>("", "upd")?),
                    });
                }
            }
        }
        let fks = Arc::new(fks);
        if let Ok(mut g) = self.fks.write() {
            *g = Some(fks.clone());
        }
        Ok(fks)
    }

    /// The tables whose rows a DELETE (`delete = true`) or UPDATE on `table` may change through
    /// cascading foreign keys, transitively (a cascaded delete cascades further; a `SET NULL`
    /// is an update of the child).
    /// With `every_fk` (`TRUNCATE … CASCADE`), every referencing table, whatever its actions.
    pub(crate) async fn affected<C: ConnectionTrait>(
        &self,
        conn: &C,
        table: &str,
        delete: bool,
        every_fk: bool,
    ) -> Result<BTreeSet<String>, DbErr> {
        let fks = self.load(conn).await?;
        let mut out = BTreeSet::new();
        let mut todo = vec![(table.to_owned(), delete)];
        while let Some((parent, deleting)) = todo.pop() {
            for fk in fks.iter().filter(|fk| fk.parent == parent) {
                let hit = every_fk || if deleting { fk.on_delete } else { fk.on_update };
                if hit && out.insert(fk.child.clone()) {
                    // Deleting cascades as deletes (or updates for SET NULL); both are conservative
                    // enough when followed as "deleting".
                    todo.push((fk.child.clone(), true));
                }
            }
        }
        Ok(out)
    }
}
