//! Property tests for the analyzer: it never panics, and its DNFs over-approximate the queries.
//!
//! The oracle property is the safety guarantee of the whole cache: for generated queries over two
//! small tables `t(a, b)` and `u(c, d)` (single table, INNER/LEFT/RIGHT/FULL joins; WHERE and ON
//! trees of `=`, `<>`, `<`, `IN`, `NOT IN`, `= ANY($n)`, `IS [NOT] NULL`, column = column,
//! constants, AND/OR/NOT, parameters that may be NULL, and NULLs in rows), the result is computed
//! with SQL three-valued logic on a small database; whenever inserting one more row into a table
//! changes the result, the analysis must list that table with a conj matching the row.
//! (Deleting the row is the same pair of states in the other order; an update is a delete plus an
//! insert.)

use std::collections::BTreeMap;

use cacheops_core::{Analyzer, AnalyzerConfig, Dialect, Value};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

// --------------------------------------------------------------------------------- the oracle

type Row = [Option<i64>; 2];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Join {
    Single,
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Col {
    table: usize,
    col: usize,
}

#[derive(Debug, Clone)]
enum Opd {
    Lit(Option<i64>),
    Param(Option<i64>),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    NotEq,
    Lt,
}

#[derive(Debug, Clone)]
enum P {
    Cmp(Col, Cmp, Opd, bool),
    ColEq(Col, Col),
    In(Col, Vec<Opd>, bool),
    Any(Col, Option<Vec<Option<i64>>>),
    IsNull(Col, bool),
    Const(Opd, Opd),
    Bool(bool),
    Not(Box<P>),
    And(Box<P>, Box<P>),
    Or(Box<P>, Box<P>),
}

#[derive(Debug, Clone)]
struct Q {
    join: Join,
    on: P,
    filter: P,
    dialect: Dialect,
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn opd(o: &Opd) -> Option<i64> {
    match o {
        Opd::Lit(v) | Opd::Param(v) => *v,
    }
}

/// `x IN (list)` under three-valued logic.
fn in3(x: Option<i64>, list: &[Option<i64>]) -> Option<bool> {
    let x = x?;
    if list.contains(&Some(x)) {
        Some(true)
    } else if list.contains(&None) {
        None
    } else {
        Some(false)
    }
}

fn eval(p: &P, rows: [Option<&Row>; 2]) -> Option<bool> {
    let get = |c: &Col| rows[c.table].and_then(|r| r[c.col]);
    match p {
        P::Cmp(c, op, o, _) => {
            let (x, y) = (get(c)?, opd(o)?);
            Some(match op {
                Cmp::Eq => x == y,
                Cmp::NotEq => x != y,
                Cmp::Lt => x < y,
            })
        }
        P::ColEq(x, y) => Some(get(x)? == get(y)?),
        P::In(c, list, neg) => {
            let values: Vec<Option<i64>> = list.iter().map(opd).collect();
            in3(get(c), &values).map(|b| b != *neg)
        }
        P::Any(c, arr) => in3(get(c), arr.as_ref()?),
        P::IsNull(c, neg) => Some(get(c).is_none() != *neg),
        P::Const(x, y) => Some(opd(x)? == opd(y)?),
        P::Bool(b) => Some(*b),
        P::Not(x) => eval(x, rows).map(|b| !b),
        P::And(x, y) => and3(eval(x, rows), eval(y, rows)),
        P::Or(x, y) => or3(eval(x, rows), eval(y, rows)),
    }
}

type Out = Vec<(Option<Row>, Option<Row>)>;

fn result(q: &Q, ts: &[Row], us: &[Row]) -> Out {
    let on = |t: &Row, u: &Row| eval(&q.on, [Some(t), Some(u)]) == Some(true);
    let mut joined: Out = Vec::new();
    match q.join {
        Join::Single => joined.extend(ts.iter().map(|t| (Some(*t), None))),
        Join::Inner => {
            for t in ts {
                for u in us {
                    if on(t, u) {
                        joined.push((Some(*t), Some(*u)));
                    }
                }
            }
        }
        Join::Left | Join::Right | Join::Full => {
            let mut u_matched = vec![false; us.len()];
            for t in ts {
                let mut any = false;
                for (k, u) in us.iter().enumerate() {
                    if on(t, u) {
                        joined.push((Some(*t), Some(*u)));
                        any = true;
                        u_matched[k] = true;
                    }
                }
                if !any && matches!(q.join, Join::Left | Join::Full) {
                    joined.push((Some(*t), None));
                }
            }
            if matches!(q.join, Join::Right | Join::Full) {
                for (k, u) in us.iter().enumerate() {
                    if !u_matched[k] {
                        joined.push((None, Some(*u)));
                    }
                }
            }
        }
    }
    let mut out: Out =
        joined.into_iter().filter(|(t, u)| eval(&q.filter, [t.as_ref(), u.as_ref()]) == Some(true)).collect();
    out.sort();
    out
}

// --------------------------------------------------------------------------------- rendering

struct Sql {
    dialect: Dialect,
    params: Vec<Value>,
    qualified: bool,
}

impl Sql {
    fn col(&self, c: &Col) -> String {
        let name = ["a", "b", "c", "d"][c.table * 2 + c.col];
        if self.qualified { format!("{}.{name}", ["t", "u"][c.table]) } else { name.to_owned() }
    }

    fn param(&mut self, v: Value) -> String {
        self.params.push(v);
        match self.dialect {
            Dialect::PostgreSql => format!("${}", self.params.len()),
            _ => "?".to_owned(),
        }
    }

    fn opd(&mut self, o: &Opd, cast: bool) -> String {
        match o {
            Opd::Lit(None) => "NULL".to_owned(),
            Opd::Lit(Some(v)) => v.to_string(),
            Opd::Param(v) => {
                let p = self.param(v.map_or(Value::Null, Value::Int));
                if cast { format!("CAST({p} AS integer)") } else { p }
            }
        }
    }

    fn pred(&mut self, p: &P) -> String {
        match p {
            P::Cmp(c, op, o, flip) => {
                let col = self.col(c);
                let val = self.opd(o, *flip);
                let op = match op {
                    Cmp::Eq => "=",
                    Cmp::NotEq => "<>",
                    Cmp::Lt => {
                        return format!("{col} < {val}");
                    }
                };
                if *flip { format!("{val} {op} {col}") } else { format!("{col} {op} {val}") }
            }
            P::ColEq(x, y) => format!("{} = {}", self.col(x), self.col(y)),
            P::In(c, list, neg) => {
                let col = self.col(c);
                let items: Vec<String> = list.iter().map(|o| self.opd(o, false)).collect();
                format!("{col} {}IN ({})", if *neg { "NOT " } else { "" }, items.join(", "))
            }
            P::Any(c, arr) => {
                let col = self.col(c);
                let v = match arr {
                    None => Value::Null,
                    Some(items) => Value::Array(items.iter().map(|x| x.map_or(Value::Null, Value::Int)).collect()),
                };
                let p = self.param(v);
                format!("{col} = ANY({p})")
            }
            P::IsNull(c, neg) => format!("{} IS {}NULL", self.col(c), if *neg { "NOT " } else { "" }),
            P::Const(x, y) => {
                let (x, y) = (self.opd(x, false), self.opd(y, false));
                format!("{x} = {y}")
            }
            P::Bool(b) => if *b { "1 = 1" } else { "1 = 0" }.to_owned(),
            P::Not(x) => format!("NOT ({})", self.pred(x)),
            P::And(x, y) => format!("({} AND {})", self.pred(x), self.pred(y)),
            P::Or(x, y) => format!("({} OR {})", self.pred(x), self.pred(y)),
        }
    }
}

fn render(q: &Q, alias: bool) -> (String, Vec<Value>) {
    let mut s = Sql { dialect: q.dialect, params: Vec::new(), qualified: q.join != Join::Single || alias };
    let sql = match q.join {
        Join::Single => {
            let w = s.pred(&q.filter);
            // `alias` only switches to qualified column references (`t.a`).
            format!("SELECT * FROM t WHERE {w}")
        }
        j => {
            let kw = match j {
                Join::Inner => "JOIN",
                Join::Left => "LEFT JOIN",
                Join::Right => "RIGHT JOIN",
                _ => "FULL JOIN",
            };
            let on = s.pred(&q.on);
            let w = s.pred(&q.filter);
            format!("SELECT * FROM t {kw} u ON {on} WHERE {w}")
        }
    };
    (sql, s.params)
}

// --------------------------------------------------------------------------------- strategies

fn small() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![4 => (0i64..3).prop_map(Some), 1 => Just(None)]
}

fn row() -> impl Strategy<Value = Row> {
    [small(), small()]
}

fn operand() -> impl Strategy<Value = Opd> {
    prop_oneof![small().prop_map(Opd::Lit), small().prop_map(Opd::Param)]
}

fn pred(tables: usize, allow_any: bool) -> impl Strategy<Value = P> {
    let col = (0..tables, 0usize..2).prop_map(|(table, col)| Col { table, col });
    let cmp = prop_oneof![Just(Cmp::Eq), Just(Cmp::Eq), Just(Cmp::NotEq), Just(Cmp::Lt)];
    let any_arr = prop_oneof![1 => Just(None), 6 => proptest::collection::vec(small(), 0..4).prop_map(Some)];
    let leaf = prop_oneof![
        6 => (col.clone(), cmp, operand(), any::<bool>()).prop_map(|(c, o, v, f)| P::Cmp(c, o, v, f)),
        2 => (col.clone(), col.clone()).prop_map(|(x, y)| P::ColEq(x, y)),
        3 => (col.clone(), proptest::collection::vec(operand(), 1..4), any::<bool>()).prop_map(|(c, l, n)| P::In(c, l, n)),
        2 => (col.clone(), any_arr, Just(allow_any)).prop_map(|(c, a, ok)| if ok {
            P::Any(c, a)
        } else {
            P::In(c, vec![Opd::Lit(Some(1)), Opd::Param(Some(2))], false)
        }),
        2 => (col, any::<bool>()).prop_map(|(c, n)| P::IsNull(c, n)),
        1 => (operand(), operand()).prop_map(|(x, y)| P::Const(x, y)),
        1 => any::<bool>().prop_map(P::Bool),
    ];
    leaf.prop_recursive(5, 48, 2, |inner| {
        prop_oneof![
            2 => inner.clone().prop_map(|x| P::Not(Box::new(x))),
            3 => (inner.clone(), inner.clone()).prop_map(|(x, y)| P::And(Box::new(x), Box::new(y))),
            3 => (inner.clone(), inner).prop_map(|(x, y)| P::Or(Box::new(x), Box::new(y))),
        ]
    })
}

fn query() -> impl Strategy<Value = Q> {
    let dialect = prop_oneof![3 => Just(Dialect::PostgreSql), 1 => Just(Dialect::Sqlite)];
    let join = prop_oneof![
        3 => Just(Join::Single),
        3 => Just(Join::Inner),
        3 => Just(Join::Left),
        1 => Just(Join::Right),
        1 => Just(Join::Full),
    ];
    (dialect, join).prop_flat_map(|(dialect, join)| {
        let tables = if join == Join::Single { 1 } else { 2 };
        let pg = dialect == Dialect::PostgreSql;
        (pred(tables, pg), pred(tables, pg)).prop_map(move |(on, filter)| Q { join, on, filter, dialect })
    })
}

fn row_map(table: usize, r: &Row) -> BTreeMap<String, Value> {
    let names = if table == 0 { ["a", "b"] } else { ["c", "d"] };
    names.iter().zip(r.iter()).map(|(n, v)| ((*n).to_owned(), v.map_or(Value::Null, Value::Int))).collect()
}

proptest! {
    #![proptest_config(config())]

    /// The DNF of each table over-approximates which rows can change the result.
    #[test]
    fn dnf_over_approximates(
        q in query(),
        ts in proptest::collection::vec(row(), 0..3),
        us in proptest::collection::vec(row(), 0..3),
        extra in proptest::collection::vec(row(), 1..4),
        alias in any::<bool>(),
    ) {
        let (sql, params) = render(&q, alias);
        let mut cfg = AnalyzerConfig::new(q.dialect);
        cfg.in_list_cap = 3;
        cfg.dnf_cap = 16;
        let analyzer = Analyzer::new(cfg);
        let analysis = match analyzer.analyze(&sql, &params) {
            Ok(a) => a,
            Err(e) => return Err(TestCaseError::fail(format!("{sql}: {e}"))),
        };
        let before = result(&q, &ts, &us);
        for r in &extra {
            let tables = if q.join == Join::Single { 1 } else { 2 };
            for table in 0..tables {
                let after = if table == 0 {
                    let mut t2 = ts.clone();
                    t2.push(*r);
                    result(&q, &t2, &us)
                } else {
                    let mut u2 = us.clone();
                    u2.push(*r);
                    result(&q, &ts, &u2)
                };
                if after != before {
                    let name = ["t", "u"][table];
                    let row = row_map(table, r);
                    let dnf = analysis.reads.get(name);
                    let ok = dnf.is_some_and(|d| d.conjs().iter().any(|c| c.matches(&row)));
                    prop_assert!(ok, "{sql} {params:?}\n  row {name}{r:?} changes the result ({before:?} -> {after:?})\n  but deps are {:?}", analysis.reads);
                }
            }
        }
    }

    /// Arbitrary text never panics.
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,200}", n in 0usize..4) {
        let params: Vec<Value> = (0..n as i64).map(Value::Int).collect();
        for d in [Dialect::PostgreSql, Dialect::Sqlite, Dialect::MySql] {
            let _ = Analyzer::new(AnalyzerConfig::new(d)).analyze(&s, &params);
        }
    }

    /// Token soup that often gets through the tokenizer and far into the parser.
    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(token(), 0..60), params in params()) {
        let sql = tokens.join(" ");
        for d in [Dialect::PostgreSql, Dialect::Sqlite, Dialect::MySql] {
            let _ = Analyzer::new(AnalyzerConfig::new(d)).analyze(&sql, &params);
        }
    }

    /// Generated statements with subqueries, joins, set operations, CTEs and writes.
    #[test]
    fn generated_statements_never_panic(sql in statement(), params in params()) {
        for d in [Dialect::PostgreSql, Dialect::Sqlite, Dialect::MySql] {
            let analyzer = Analyzer::new(AnalyzerConfig::new(d));
            let _ = analyzer.analyze(&sql, &params);
            let _ = analyzer.analyze(&sql, &params[..params.len() / 2]);
        }
    }

    /// Deep nesting of parentheses and NOT is an error or a result, never a crash.
    #[test]
    fn deep_nesting_never_panics(depth in 0usize..200, kind in 0u8..4) {
        let body = match kind {
            0 => format!("{}id = 1{}", "(".repeat(depth), ")".repeat(depth)),
            1 => format!("{}id = 1", "NOT ".repeat(depth)),
            2 => format!("{}id = 1{}", "NOT (".repeat(depth), ")".repeat(depth)),
            _ => format!("id IN {}SELECT 1{}", "(SELECT id FROM post WHERE id IN ".repeat(depth), ")".repeat(depth)),
        };
        let sql = format!("SELECT * FROM post WHERE {body}");
        let _ = Analyzer::new(AnalyzerConfig::default()).analyze(&sql, &[]);
    }
}

fn params() -> impl Strategy<Value = Vec<Value>> {
    let v = prop_oneof![
        (0i64..5).prop_map(Value::Int),
        Just(Value::Null),
        "[a-z]{0,3}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        proptest::collection::vec(prop_oneof![(0i64..5).prop_map(Value::Int), Just(Value::Null)], 0..12)
            .prop_map(Value::Array),
    ];
    proptest::collection::vec(v, 0..8)
}

fn token() -> impl Strategy<Value = String> {
    let words = [
        "SELECT",
        "*",
        "FROM",
        "WHERE",
        "post",
        "p",
        "tag",
        "id",
        "p.id",
        "=",
        "<>",
        "IN",
        "(",
        ")",
        ",",
        "AND",
        "OR",
        "NOT",
        "IS",
        "NULL",
        "JOIN",
        "LEFT",
        "ON",
        "UNION",
        "WITH",
        "AS",
        "EXISTS",
        "ANY",
        "$1",
        "$2",
        "?",
        "?2",
        "1",
        "'x'",
        "::int",
        "CAST",
        "UPDATE",
        "SET",
        "DELETE",
        "INSERT",
        "INTO",
        "VALUES",
        "RETURNING",
        "ON CONFLICT",
        "DO",
        "NOTHING",
        "TRUNCATE",
        "LIKE",
        "BETWEEN",
        ";",
        "true",
        "ARRAY[",
        "]",
        "FOR UPDATE",
        "GROUP BY",
        "ORDER BY",
        "LIMIT",
        "USING",
        "RIGHT",
        "FULL",
        "LATERAL",
        "\"Post\"",
        "public.post",
    ];
    proptest::sample::select(words.to_vec()).prop_map(str::to_owned)
}

fn cond() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (col_name(), value()).prop_map(|(c, v)| format!("{c} = {v}")),
        (col_name(), value()).prop_map(|(c, v)| format!("{v} = {c}")),
        (col_name(), proptest::collection::vec(value(), 0..10)).prop_map(|(c, v)| format!("{c} IN ({})", v.join(", "))),
        col_name().prop_map(|c| format!("{c} IS NULL")),
        col_name().prop_map(|c| format!("{c} IS NOT NULL")),
        col_name().prop_map(|c| format!("{c} LIKE 'x%'")),
        col_name().prop_map(|c| format!("{c} = ANY($1)")),
        col_name(),
        (col_name(), col_name()).prop_map(|(a, b)| format!("{a} = {b}")),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|x| format!("NOT ({x})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} AND {y})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} OR {y})")),
            (col_name(), inner.clone()).prop_map(|(c, x)| format!("{c} IN (SELECT id FROM tag WHERE {x})")),
            inner.clone().prop_map(|x| format!("EXISTS (SELECT 1 FROM tag t2 WHERE t2.post_id = p.id AND {x})")),
            inner.prop_map(|x| format!("(SELECT count(*) FROM category c2 WHERE {x}) = 1")),
        ]
    })
}

fn col_name() -> impl Strategy<Value = String> {
    proptest::sample::select(vec![
        "id",
        "p.id",
        "c.id",
        "category_id",
        "p.category_id",
        "visible",
        "t.tag_id",
        "x.y.z",
        "\"Id\"",
    ])
    .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    proptest::sample::select(vec![
        "1",
        "2",
        "NULL",
        "'a'",
        "$1",
        "$2::int",
        "?",
        "CAST($3 AS int)",
        "-1",
        "now()",
        "true",
    ])
    .prop_map(str::to_owned)
}

fn statement() -> impl Strategy<Value = String> {
    let from = prop_oneof![
        Just("post p".to_owned()),
        Just("post p JOIN category c ON p.category_id = c.id".to_owned()),
        Just("post p LEFT JOIN category c ON p.category_id = c.id".to_owned()),
        Just("post p RIGHT JOIN category c ON p.category_id = c.id AND c.id = 1".to_owned()),
        Just("post p FULL JOIN category c USING (id)".to_owned()),
        Just("post p, tag t".to_owned()),
        cond().prop_map(|x| format!("(SELECT * FROM post p WHERE {x}) AS p")),
        Just("category c JOIN (post p LEFT JOIN tag t ON t.post_id = p.id) ON p.category_id = c.id".to_owned()),
    ];
    (from, cond(), cond(), 0u8..9).prop_map(|(from, a, b, kind)| match kind {
        0 => format!("SELECT * FROM {from} WHERE {a}"),
        1 => format!("SELECT * FROM {from} WHERE {a} UNION SELECT * FROM {from} WHERE {b}"),
        2 => format!("WITH w AS (SELECT * FROM {from} WHERE {a}) SELECT * FROM w WHERE {b}"),
        3 => format!("UPDATE post p SET title = $1 WHERE {a}"),
        4 => format!("DELETE FROM post p WHERE {a}"),
        5 => format!("INSERT INTO post (id, title) SELECT id, title FROM {from} WHERE {a}"),
        6 => format!("SELECT count(*) FROM {from} WHERE {a} GROUP BY p.id HAVING {b}"),
        7 => format!("UPDATE post p SET title = c.title FROM category c WHERE {a} AND {b}"),
        _ => format!("SELECT ({}) FROM {from} WHERE {a} FOR UPDATE", format_args!("SELECT 1 FROM tag WHERE {b}")),
    })
}
