//! Data-driven cases for the SQL analyzer.
//!
//! Each case gives SQL, dialect, bind values, the expected statement kind and the expected reads
//! written compactly: `table: conj | conj; table: any`, tables sorted by name, conjs rendered by
//! `Conj::rendered()` (columns sorted, `NULL` for SQL NULL) and sorted; `any` is table level and a
//! table that is absent can never be affected. Some cases also check the write target.

use cacheops_core::value::NULL_RENDERING;
use cacheops_core::{Analysis, AnalysisError, Analyzer, AnalyzerConfig, Dependencies, Dialect, StatementKind, Value};

use Dialect::{MySql, PostgreSql as Pg, Sqlite};
use StatementKind::{Delete, Insert, Other, Read, Update};

struct Case {
    sql: &'static str,
    dialect: Dialect,
    params: Vec<Value>,
    kind: StatementKind,
    reads: &'static str,
    setup: Option<fn(&mut AnalyzerConfig)>,
    check: Option<fn(&Analysis)>,
}

fn case(dialect: Dialect, sql: &'static str, params: Vec<Value>, kind: StatementKind, reads: &'static str) -> Case {
    Case { sql, dialect, params, kind, reads, setup: None, check: None }
}

fn pg(sql: &'static str, reads: &'static str) -> Case {
    case(Pg, sql, vec![], Read, reads)
}

fn pgp(sql: &'static str, params: Vec<Value>, reads: &'static str) -> Case {
    case(Pg, sql, params, Read, reads)
}

impl Case {
    fn setup(mut self, f: fn(&mut AnalyzerConfig)) -> Self {
        self.setup = Some(f);
        self
    }
    fn check(mut self, f: fn(&Analysis)) -> Self {
        self.check = Some(f);
        self
    }
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

fn t(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn arr(v: &[i64]) -> Value {
    Value::Array(v.iter().map(|x| Value::Int(*x)).collect())
}

/// Renders dependencies in the compact expected form.
/// The tables and their DNFs; tables whose DNF never matches (they depend on their table stamp
/// only) are left out: see `never_matching_reads_keep_their_tables`.
pub fn render(d: &Dependencies) -> String {
    d.iter()
        .filter(|(_, dnf)| !dnf.is_never())
        .map(|(table, dnf)| {
            let body = if dnf.is_any() {
                "any".to_owned()
            } else {
                let mut conjs: Vec<String> =
                    dnf.conjs().iter().map(|c| c.rendered().replace(NULL_RENDERING, "NULL")).collect();
                conjs.sort();
                conjs.join(" | ")
            };
            format!("{table}: {body}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn render_dnf(d: &cacheops_core::Dnf) -> String {
    if d.is_any() {
        return "any".to_owned();
    }
    let mut conjs: Vec<String> = d.conjs().iter().map(|c| c.rendered().replace(NULL_RENDERING, "NULL")).collect();
    conjs.sort();
    conjs.join(" | ")
}

fn write(a: &Analysis) -> &cacheops_core::WriteTarget {
    a.write.as_ref().expect("write target")
}

fn cases() -> Vec<Case> {
    vec![
        // --- basic terms
        pg("SELECT * FROM post WHERE id = 1", "post: id=1"),
        pg("SELECT * FROM post WHERE 1 = id", "post: id=1"),
        pg("SELECT * FROM post WHERE id = '3'", "post: id=3"),
        pg("SELECT * FROM post WHERE ((((id = 1))))", "post: id=1"),
        pg("SELECT * FROM post WHERE id IN (1, 2, 3)", "post: id=1 | id=2 | id=3"),
        pg(
            "SELECT * FROM post WHERE id IN (1, 2, 3, 4, 5, 6, 7)",
            "post: id=1 | id=2 | id=3 | id=4 | id=5 | id=6 | id=7",
        ),
        pg("SELECT * FROM post WHERE id IN (1, 2, 3, 4, 5, 6, 7, 8)", "post: any"),
        pg("SELECT * FROM post WHERE id IN (1, NULL)", "post: id=1"),
        pgp("SELECT * FROM post WHERE id = ANY($1)", vec![arr(&[])], ""),
        pg("SELECT * FROM post WHERE category_id IS NULL", "post: category_id=NULL"),
        pg("SELECT * FROM post WHERE category_id IS NOT NULL", "post: any"),
        pg("SELECT * FROM post WHERE NOT (category_id IS NOT NULL)", "post: category_id=NULL"),
        pg("SELECT * FROM post WHERE id = 1 OR title = 'x'", "post: id=1 | title=x"),
        pg("SELECT * FROM post WHERE id = 1 OR title LIKE 'x%'", "post: any"),
        pg("SELECT * FROM post WHERE id <> 1", "post: any"),
        pg("SELECT * FROM post WHERE id > 5 AND id <= 10", "post: any"),
        pg("SELECT * FROM post WHERE id BETWEEN 1 AND 3", "post: any"),
        pg("SELECT * FROM post WHERE title ILIKE '%x%'", "post: any"),
        pg("SELECT * FROM post WHERE lower(title) = 'x'", "post: any"),
        pg("SELECT * FROM post WHERE id::text = '5'", "post: any"),
        pg("SELECT * FROM post WHERE id = id", "post: any"),
        pg("SELECT * FROM post WHERE id = 1 AND title LIKE 'a%'", "post: id=1"),
        // --- NOT / De Morgan / SOME
        pg("SELECT * FROM post WHERE NOT (id <> 1 OR title <> 'a')", "post: id=1&title=a"),
        pg("SELECT * FROM post WHERE NOT (id = 1 OR id = 2)", "post: any"),
        pg("SELECT * FROM post WHERE NOT (id IN (1, 2) AND id IS NOT NULL)", "post: any"),
        pg("SELECT * FROM post WHERE NOT NOT id = 4", "post: id=4"),
        pg(
            "SELECT * FROM post WHERE category_id IN (1, 2) AND NOT category_id = 1",
            "post: category_id=1 | category_id=2",
        ),
        // --- impossible / constants
        pg("SELECT * FROM post WHERE id = 1 AND id = 2", ""),
        pg("SELECT * FROM post WHERE id = 1 AND title = 'a' AND id = 2 OR id = 3", "post: id=3"),
        pgp("SELECT * FROM post WHERE id = $1 AND id = $2", vec![i(1), i(2)], ""),
        pgp("SELECT * FROM post WHERE id = $1 AND id = $2", vec![i(1), t("1")], "post: id=1"),
        pg("SELECT * FROM post WHERE id = NULL", ""),
        pgp("SELECT * FROM post WHERE category_id = $1", vec![Value::Null], ""),
        pg("SELECT * FROM post WHERE 1 = 0", ""),
        pg("SELECT * FROM post WHERE 1 = 1 AND id = 2", "post: id=2"),
        pg("SELECT * FROM post WHERE false", ""),
        pg("SELECT * FROM post WHERE id IN (SELECT post_id FROM tag WHERE 1 = 0)", "post: any"),
        // --- parameters, casts, ANY
        pgp("SELECT * FROM post WHERE id = $1::int4", vec![i(5)], "post: id=5"),
        pgp(
            "SELECT * FROM post WHERE id = CAST($1 AS integer) AND category_id = $2::bigint",
            vec![i(5), i(6)],
            "post: category_id=6&id=5",
        ),
        pgp("SELECT * FROM post WHERE id = ANY($1)", vec![arr(&[1, 2])], "post: id=1 | id=2"),
        pgp("SELECT * FROM post WHERE id = ANY($1::int[])", vec![arr(&[1, 2, 3, 4, 5, 6, 7, 8])], "post: any"),
        pgp("SELECT * FROM post WHERE id = ANY($1)", vec![Value::Null], ""),
        pg("SELECT * FROM post WHERE id = ANY(ARRAY[4, 5])", "post: id=4 | id=5"),
        pgp(
            "SELECT * FROM post WHERE id IN ($1, $2) AND category_id = $3",
            vec![i(1), i(2), i(9)],
            "post: category_id=9&id=1 | category_id=9&id=2",
        ),
        case(
            Sqlite,
            "SELECT * FROM post WHERE category_id = ? AND id IN (?, ?)",
            vec![i(1), i(2), i(3)],
            Read,
            "post: category_id=1&id=2 | category_id=1&id=3",
        ),
        case(
            Sqlite,
            "SELECT * FROM post WHERE id = ?2 AND category_id = ?1",
            vec![i(1), i(2)],
            Read,
            "post: category_id=1&id=2",
        ),
        case(
            MySql,
            "SELECT * FROM `post` WHERE `id` = ? AND title = ?",
            vec![i(9), t("x")],
            Read,
            "post: id=9&title=x",
        ),
        // --- names
        pg(r#"SELECT * FROM "public"."Post" AS "P" WHERE "P"."Id" = 1"#, "Post: Id=1"),
        pg("SELECT * FROM public.post WHERE post.id = 1", "post: id=1"),
        // The schema qualifier is dropped: `blog.post` and `post` (through search_path) are one table.
        pg("SELECT * FROM blog.post WHERE blog.post.id = 1", "post: id=1"),
        pg("SELECT * FROM blog.post p JOIN other.post q ON p.id = q.id WHERE blog.post.id = 1", "post: any"),
        pg("SELECT * FROM Post WHERE ID = 1 AND Post.Title = 'A'", "post: id=1&title=A"),
        case(Sqlite, "SELECT * FROM main.post WHERE id = 1", vec![], Read, "post: id=1"),
        pg("SELECT * FROM post p WHERE post.id = 1", "post: any"),
        // --- booleans
        pg("SELECT * FROM post WHERE visible", "post: visible=1"),
        pg("SELECT * FROM post WHERE NOT visible AND id = 2", "post: id=2&visible=0"),
        pg("SELECT * FROM post WHERE visible IS TRUE", "post: visible=1"),
        pg("SELECT * FROM post WHERE visible IS NOT TRUE", "post: any"),
        pg("SELECT * FROM post WHERE visible = true", "post: visible=1"),
        case(MySql, "SELECT * FROM post WHERE visible", vec![], Read, "post: any"),
        // --- joins
        pg(
            "SELECT * FROM post JOIN category ON post.category_id = category.id WHERE category.id = 5",
            "category: id=5; post: category_id=5",
        ),
        pg(
            "SELECT p.* FROM post p INNER JOIN category c ON p.category_id = c.id WHERE c.id = 1 AND c.title = 'Django' AND p.title = 'Cacheops'",
            "category: id=1&title=Django; post: category_id=1&title=Cacheops",
        ),
        pg(
            "SELECT * FROM post p, category c WHERE p.category_id = c.id AND p.category_id = 7",
            "category: id=7; post: category_id=7",
        ),
        pg("SELECT * FROM post p JOIN category c USING (id) WHERE p.id = 2", "category: id=2; post: id=2"),
        pg(
            "SELECT * FROM post p JOIN category c ON p.category_id = c.id WHERE title = 'x'",
            "category: any; post: any",
        ),
        pg(
            "SELECT * FROM post p LEFT JOIN category c ON p.category_id = c.id WHERE p.id = 1",
            "category: any; post: id=1",
        ),
        pg(
            "SELECT * FROM post p LEFT JOIN category c ON p.category_id = c.id WHERE p.category_id = 3",
            "category: id=3; post: category_id=3",
        ),
        pg(
            "SELECT * FROM post p LEFT JOIN category c ON p.category_id = c.id AND c.visible WHERE p.category_id = 3",
            "category: id=3&visible=1; post: category_id=3",
        ),
        pg(
            "SELECT * FROM post p LEFT JOIN category c ON p.category_id = c.id WHERE c.title = 'x'",
            "category: title=x; post: any",
        ),
        pg(
            "SELECT * FROM post p LEFT JOIN category c ON p.category_id = c.id WHERE c.id IS NULL AND p.id = 4",
            "category: any; post: id=4",
        ),
        pg(
            "SELECT * FROM post p LEFT JOIN category c ON p.category_id = c.id AND c.id = 3 WHERE p.id = 4",
            "category: id=3; post: id=4",
        ),
        pg(
            "SELECT * FROM category c RIGHT JOIN post p ON p.category_id = c.id WHERE p.category_id = 3",
            "category: id=3; post: category_id=3",
        ),
        pg(
            "SELECT * FROM post p FULL JOIN category c ON p.category_id = c.id WHERE p.id = 1",
            "category: any; post: any",
        ),
        pg(
            "SELECT * FROM category a JOIN category b ON a.parent_id = b.id WHERE a.id = 5 AND b.id = 7",
            "category: id=5&parent_id=7 | id=7",
        ),
        pg("SELECT * FROM category a JOIN category b ON a.parent_id = b.id WHERE a.id = 5", "category: any"),
        // --- subqueries
        pg("SELECT * FROM post WHERE id IN (SELECT post_id FROM tag WHERE tag_id = 5)", "post: any; tag: tag_id=5"),
        pg(
            "SELECT * FROM post WHERE id = 2 AND id IN (SELECT post_id FROM tag WHERE tag_id = 5)",
            "post: id=2; tag: tag_id=5",
        ),
        pg(
            "SELECT * FROM post p WHERE p.id = 3 AND EXISTS (SELECT 1 FROM tag t WHERE t.post_id = p.id AND t.tag_id = 5)",
            "post: id=3; tag: tag_id=5",
        ),
        pg("SELECT * FROM post p WHERE NOT EXISTS (SELECT 1 FROM tag t WHERE t.post_id = p.id)", "post: any; tag: any"),
        pg(
            "SELECT p.id, (SELECT count(*) FROM comment c WHERE c.post_id = p.id) AS n FROM post p WHERE p.id = 1",
            "comment: any; post: id=1",
        ),
        pg("SELECT * FROM (SELECT * FROM post WHERE category_id = 2) AS sub WHERE sub.id = 3", "post: category_id=2"),
        pg(
            "SELECT * FROM post WHERE category_id = (SELECT id FROM category WHERE slug = 'x' LIMIT 1)",
            "category: slug=x; post: any",
        ),
        pg("SELECT coalesce((SELECT max(id) FROM tag WHERE post_id = 1), 0)", "tag: post_id=1"),
        pg("SELECT * FROM post ORDER BY (SELECT count(*) FROM tag WHERE tag.post_id = post.id)", "post: any; tag: any"),
        // --- set operations and CTEs
        pg(
            "SELECT id FROM post WHERE id = 1 UNION SELECT id FROM post WHERE id = 2 UNION ALL SELECT id FROM category WHERE id = 3",
            "category: id=3; post: id=1 | id=2",
        ),
        pg(
            "SELECT id FROM post WHERE id = 1 EXCEPT SELECT post_id FROM tag WHERE tag_id = 2",
            "post: id=1; tag: tag_id=2",
        ),
        pg(
            "WITH recent AS (SELECT * FROM post WHERE category_id = 1) SELECT * FROM recent r JOIN category c ON r.category_id = c.id WHERE c.id = 1",
            "category: id=1; post: category_id=1",
        ),
        pg(
            "WITH RECURSIVE tree AS (SELECT id, parent_id FROM category WHERE id = 1 UNION ALL SELECT c.id, c.parent_id FROM category c JOIN tree t ON c.parent_id = t.id) SELECT * FROM tree",
            "category: any",
        ),
        // --- aggregates
        pg("SELECT count(*) FROM post WHERE category_id = 2", "post: category_id=2"),
        pg(
            "SELECT category_id, max(id) FROM post WHERE visible GROUP BY category_id HAVING count(*) > 1 ORDER BY 1 LIMIT 10 OFFSET 5",
            "post: visible=1",
        ),
        pg(
            "SELECT c.id, count(p.id) FROM category c LEFT JOIN post p ON p.category_id = c.id WHERE c.id = 4 GROUP BY c.id",
            "category: id=4; post: category_id=4",
        ),
        // --- config
        pg("SELECT * FROM post WHERE body = 'long' AND id = 1", "post: id=1").setup(|c| {
            c.skip_columns.insert("body".into());
        }),
        pg("SELECT * FROM post WHERE post.body = 'long'", "post: any").setup(|c| {
            c.skip_columns.insert("post.body".into());
        }),
        pg("SELECT * FROM post WHERE a IN (1, 2, 3) AND b IN (1, 2)", "post: any").setup(|c| c.dnf_cap = 4),
        pg("SELECT * FROM post WHERE a IN (1, 2) AND b IN (1, 2)", "post: a=1&b=1 | a=1&b=2 | a=2&b=1 | a=2&b=2")
            .setup(|c| c.dnf_cap = 4),
        pg("SELECT * FROM post WHERE id IN (1, 2, 3)", "post: any").setup(|c| c.in_list_cap = 3),
        // --- select flags
        pg("SELECT * FROM post WHERE id = 1 FOR UPDATE", "post: id=1").check(|a| assert!(a.locking && !a.volatile)),
        pg("SELECT * FROM post WHERE created < now()", "post: any").check(|a| assert!(a.volatile && !a.locking)),
        pg("SELECT nextval('post_id_seq')", "").check(|a| assert!(a.volatile)),
        pg("SELECT * FROM post WHERE id = 1", "post: id=1")
            .check(|a| assert!(!a.volatile && !a.locking && a.write.is_none())),
        case(Sqlite, "SELECT id + 1 AS x FROM post WHERE x = 5", vec![], Read, "post: any"),
        // --- writes
        case(
            Pg,
            "INSERT INTO post (id, title, created) VALUES (1, 'a', now()), ($1, $2, DEFAULT) RETURNING id, title",
            vec![i(2), t("b")],
            Insert,
            "",
        )
        .check(|a| {
            let w = write(a);
            assert_eq!(w.table, "post");
            assert_eq!(w.columns, vec!["id", "title", "created"]);
            assert_eq!(w.rows, vec![vec![Some(i(1)), Some(t("a")), None], vec![Some(i(2)), Some(t("b")), None]]);
            assert!(w.values_known && !w.upsert);
            assert_eq!(w.returning, Some(vec!["id".to_owned(), "title".to_owned()]));
            assert!(w.filter.is_any());
        }),
        case(Sqlite, "INSERT INTO post (id, title) VALUES (?, ?) RETURNING *", vec![i(5), t("z")], Insert, "").check(
            |a| {
                let w = write(a);
                assert_eq!(w.rows, vec![vec![Some(i(5)), Some(t("z"))]]);
                assert_eq!(w.returning, Some(vec!["*".to_owned()]));
            },
        ),
        case(
            Pg,
            "INSERT INTO post_archive (id, title) SELECT id, title FROM post WHERE category_id = $1",
            vec![i(3)],
            Insert,
            "post: category_id=3",
        )
        .check(|a| {
            let w = write(a);
            assert_eq!(w.table, "post_archive");
            assert!(!w.values_known && w.rows.is_empty());
        }),
        case(
            Pg,
            "INSERT INTO post (id, title) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title",
            vec![i(1), t("t")],
            Insert,
            "",
        )
        .check(|a| {
            let w = write(a);
            assert!(w.upsert);
            assert_eq!(w.conflict_columns, vec!["id"]);
            assert_eq!(w.upsert_columns, vec!["title"]);
            assert_eq!(w.rows, vec![vec![Some(i(1)), Some(t("t"))]]);
        }),
        case(Pg, "INSERT INTO post (id) VALUES (1) ON CONFLICT DO NOTHING", vec![], Insert, "")
            .check(|a| assert!(!write(a).upsert)),
        case(
            MySql,
            "INSERT INTO post (id, title) VALUES (?, ?) ON DUPLICATE KEY UPDATE title = VALUES(title)",
            vec![i(1), t("t")],
            Insert,
            "",
        )
        .check(|a| {
            let w = write(a);
            assert!(w.upsert);
            assert_eq!(w.upsert_columns, vec!["title"]);
        }),
        case(Pg, "UPDATE post SET title = $1, visible = true WHERE id = $2", vec![t("new"), i(7)], Update, "").check(
            |a| {
                let w = write(a);
                assert_eq!(w.table, "post");
                assert_eq!(w.columns, vec!["title", "visible"]);
                assert_eq!(w.rows, vec![vec![Some(t("new")), Some(Value::Bool(true))]]);
                assert_eq!(render_dnf(&w.filter), "id=7");
                assert_eq!(w.where_sql.as_deref(), Some("id = $2"));
                assert_eq!(w.where_params, vec![1]);
                assert_eq!(w.target_sql, "post");
                assert_eq!(w.preimage_sql.as_deref(), Some("SELECT * FROM post WHERE id = $1 FOR UPDATE"));
            },
        ),
        case(
            MySql,
            "UPDATE post SET title = ? WHERE id = ? AND category_id IN (?, ?)",
            vec![t("n"), i(7), i(1), i(2)],
            Update,
            "",
        )
        .check(|a| {
            let w = write(a);
            assert_eq!(w.rows, vec![vec![Some(t("n"))]]);
            assert_eq!(render_dnf(&w.filter), "category_id=1&id=7 | category_id=2&id=7");
            assert_eq!(w.where_sql.as_deref(), Some("id = ? AND category_id IN (?, ?)"));
            assert_eq!(w.where_params, vec![1, 2, 3]);
            assert_eq!(
                w.preimage_sql.as_deref(),
                Some("SELECT * FROM post WHERE id = ? AND category_id IN (?, ?) FOR UPDATE")
            );
        }),
        case(Sqlite, "UPDATE post AS p SET title = ? WHERE p.id = ?", vec![t("n"), i(8)], Update, "").check(|a| {
            let w = write(a);
            assert_eq!(render_dnf(&w.filter), "id=8");
            assert_eq!(w.target_sql, "post AS p");
            assert_eq!(w.preimage_sql.as_deref(), Some("SELECT * FROM post AS p WHERE p.id = ?1"));
        }),
        case(
            Pg,
            "UPDATE post SET visible = false WHERE category_id IN (SELECT id FROM category WHERE title = 'x')",
            vec![],
            Update,
            "category: title=x",
        )
        .check(|a| assert!(write(a).filter.is_any())),
        case(
            Pg,
            "UPDATE post p SET title = c.title FROM category c WHERE p.category_id = c.id AND c.id = 4",
            vec![],
            Update,
            "category: id=4",
        )
        .check(|a| {
            let w = write(a);
            assert_eq!(render_dnf(&w.filter), "category_id=4");
            assert_eq!(w.rows, vec![vec![None]]);
            assert!(w.preimage_sql.is_none());
        }),
        case(Pg, "UPDATE post SET views = views + 1", vec![], Update, "").check(|a| {
            let w = write(a);
            assert!(w.filter.is_any());
            assert!(w.where_sql.is_none() && w.preimage_sql.is_none());
        }),
        case(Pg, "DELETE FROM post WHERE id IN (1, 2) RETURNING id", vec![], Delete, "").check(|a| {
            let w = write(a);
            assert_eq!(render_dnf(&w.filter), "id=1 | id=2");
            assert_eq!(w.returning, Some(vec!["id".to_owned()]));
            assert!(!w.values_known);
        }),
        case(
            Pg,
            "DELETE FROM post p USING category c WHERE p.category_id = c.id AND c.id = 4",
            vec![],
            Delete,
            "category: id=4",
        )
        .check(|a| assert_eq!(render_dnf(&write(a).filter), "category_id=4")),
        case(MySql, "DELETE FROM post WHERE id = ?", vec![i(3)], Delete, "").check(|a| {
            let w = write(a);
            assert_eq!(render_dnf(&w.filter), "id=3");
            assert_eq!(w.where_params, vec![0]);
        }),
        case(Pg, "TRUNCATE post, tag", vec![], Delete, "").check(|a| {
            let w = write(a);
            assert_eq!(w.table, "post");
            assert_eq!(w.extra_tables, vec!["tag"]);
            assert!(w.filter.is_any());
        }),
        case(Pg, "WITH d AS (DELETE FROM post WHERE id = 1 RETURNING *) SELECT * FROM d", vec![], Delete, "").check(
            |a| {
                assert!(a.volatile);
                assert_eq!(write(a).table, "post");
            },
        ),
        // --- other statements
        case(Pg, "BEGIN", vec![], Other, ""),
        case(Pg, "SET search_path TO public", vec![], Other, ""),
        case(Pg, "CREATE TABLE x (id int)", vec![], Other, ""),
        case(MySql, "SHOW TABLES", vec![], Other, ""),
    ]
}

#[test]
fn table_of_cases() {
    let cases = cases();
    assert!(cases.len() >= 45, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut cfg = AnalyzerConfig::new(c.dialect);
        if let Some(f) = c.setup {
            f(&mut cfg);
        }
        let analyzer = Analyzer::new(cfg);
        match analyzer.analyze(c.sql, &c.params) {
            Ok(a) => {
                let got = render(&a.reads);
                if a.kind != c.kind || got != c.reads {
                    failures.push(format!(
                        "{}\n   expected {:?} `{}`\n   got      {:?} `{}`",
                        c.sql, c.kind, c.reads, a.kind, got
                    ));
                    continue;
                }
                if let Some(check) = c.check {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&a)));
                    if r.is_err() {
                        failures.push(format!("{}\n   check failed: {:?}", c.sql, a.write));
                    }
                }
            }
            Err(e) => failures.push(format!("{}\n   error {e}", c.sql)),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn errors_are_values() {
    let a = Analyzer::new(AnalyzerConfig::default());
    assert!(matches!(a.analyze("SELEKT * FROM", &[]), Err(AnalysisError::Parse(_))));
    assert!(matches!(a.analyze("SELECT 1; SELECT 2", &[]), Err(AnalysisError::NotOneStatement(2))));
    assert!(matches!(a.analyze("", &[]), Err(AnalysisError::NotOneStatement(0))));
    assert!(matches!(
        a.analyze("SELECT * FROM post WHERE id = $2", &[i(1)]),
        Err(AnalysisError::ParamOutOfRange { index: 1, len: 1 })
    ));
    let m = Analyzer::new(AnalyzerConfig::new(MySql));
    assert!(matches!(
        m.analyze("SELECT * FROM post WHERE id = ? AND x = ?", &[i(1)]),
        Err(AnalysisError::ParamOutOfRange { .. })
    ));
    // The same bad SQL again is a memo hit and the same error.
    assert!(matches!(a.analyze("SELEKT * FROM", &[]), Err(AnalysisError::Parse(_))));
}

#[test]
fn memo_substitutes_params() {
    let a = Analyzer::new(AnalyzerConfig::default());
    let sql = "SELECT * FROM post WHERE category_id = $1 AND id = ANY($2)";
    let r1 = a.analyze(sql, &[i(1), arr(&[1, 2])]).unwrap();
    assert_eq!(render(&r1.reads), "post: category_id=1&id=1 | category_id=1&id=2");
    assert_eq!(a.memo_stats(), (0, 1));
    let r2 = a.analyze(sql, &[i(2), arr(&[3])]).unwrap();
    assert_eq!(render(&r2.reads), "post: category_id=2&id=3");
    let r3 = a.analyze(sql, &[i(2), arr(&[1, 2, 3, 4, 5, 6, 7, 8, 9])]).unwrap();
    assert_eq!(render(&r3.reads), "post: category_id=2");
    let r4 = a.analyze(sql, &[Value::Null, arr(&[3])]).unwrap();
    assert_eq!(render(&r4.reads), "");
    assert_eq!(a.memo_stats(), (3, 1));
    // Parameter-free templates are evaluated once.
    let s2 = "SELECT * FROM post WHERE id = 1";
    for _ in 0..3 {
        assert_eq!(render(&a.analyze(s2, &[]).unwrap().reads), "post: id=1");
    }
    assert_eq!(a.memo_stats(), (5, 2));
}

#[test]
fn memo_is_bounded() {
    let mut cfg = AnalyzerConfig::default();
    cfg.memo_capacity = 2;
    let a = Analyzer::new(cfg);
    for sql in ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT 1"] {
        a.analyze(sql, &[]).unwrap();
    }
    assert_eq!(a.memo_stats(), (0, 4));
    let mut cfg = AnalyzerConfig::default();
    cfg.memo_capacity = 0;
    let a = Analyzer::new(cfg);
    a.analyze("SELECT 1", &[]).unwrap();
    a.analyze("SELECT 1", &[]).unwrap();
    assert_eq!(a.memo_stats(), (0, 2));
}

/// The memo is bounded in bytes: large statements push each other out, and one larger than the
/// whole budget is never memoised.
#[test]
fn memo_is_bounded_in_bytes() {
    let mut cfg = AnalyzerConfig::default();
    cfg.memo_bytes = 1 << 20;
    let a = Analyzer::new(cfg);
    let big = |i: usize| format!("SELECT * FROM post WHERE id = {i} AND title = '{}'", "x".repeat(50_000));
    for i in 0..100 {
        a.analyze(&big(i), &[]).unwrap();
    }
    let (entries, bytes) = a.memo_size();
    assert!(bytes <= 1 << 20, "{bytes} bytes");
    assert!((1..=4).contains(&entries), "{entries} entries");
    // The most recent one is memoised (a hit); the first one was pushed out (a miss).
    let (h0, m0) = a.memo_stats();
    a.analyze(&big(99), &[]).unwrap();
    a.analyze(&big(0), &[]).unwrap();
    assert_eq!(a.memo_stats(), (h0 + 1, m0 + 1));
    // Larger than the budget: analysed, never memoised.
    let huge = format!("SELECT * FROM post WHERE title = '{}'", "y".repeat(400_000));
    a.analyze(&huge, &[]).unwrap();
    a.analyze(&huge, &[]).unwrap();
    assert!(a.memo_size().1 <= 1 << 20);
    assert_eq!(a.memo_stats().0, h0 + 1, "the huge statement was never a hit");
}

#[test]
fn analyzer_is_shareable_across_threads() {
    let a = std::sync::Arc::new(Analyzer::new(AnalyzerConfig::default()));
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let a = a.clone();
            std::thread::spawn(move || {
                for k in 0..50 {
                    let r = a.analyze("SELECT * FROM post WHERE id = $1", &[i(n * 100 + k)]).unwrap();
                    assert_eq!(render(&r.reads), format!("post: id={}", n * 100 + k));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (hits, misses) = a.memo_stats();
    assert_eq!(hits + misses, 200);
    assert!(misses <= 4);
}

#[test]
fn too_complex_input_is_an_error_not_a_crash() {
    let a = Analyzer::new(AnalyzerConfig::default());
    let long = format!("SELECT * FROM post WHERE {}", vec!["id = 1"; 20_000].join(" OR "));
    assert!(matches!(a.analyze(&long, &[]), Err(AnalysisError::TooComplex)));
    let ok = format!("SELECT * FROM post WHERE {}", vec!["id = 1"; 2_000].join(" AND "));
    assert_eq!(render(&a.analyze(&ok, &[]).unwrap().reads), "post: id=1");
    let deep = format!("SELECT * FROM post WHERE {}id = 1{}", "(".repeat(300), ")".repeat(300));
    assert!(a.analyze(&deep, &[]).is_err());
}

#[test]
fn never_matching_reads_keep_their_tables() {
    let a = Analyzer::new(AnalyzerConfig::default());
    for sql in [
        "SELECT * FROM post WHERE 1 = 2",
        "SELECT * FROM post WHERE id = 1 AND id = 2",
        "SELECT * FROM post WHERE id IN (NULL)",
    ] {
        let r = a.analyze(sql, &[]).unwrap();
        assert!(r.reads.get("post").is_some_and(|d| d.is_never()), "{sql}: {:?}", r.reads);
        assert!(!r.reads.is_empty(), "{sql}: a read of a table is cacheable");
    }
    // A never-matching branch adds nothing to a table with conditions.
    let r = a.analyze("SELECT * FROM post WHERE id = 1 OR 1 = 2", &[]).unwrap();
    assert_eq!(render(&r.reads), "post: id=1");
}
