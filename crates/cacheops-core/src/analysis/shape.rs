//! The shape of a read's result: rows, a count, other aggregates, or an existence check.
//! Integrations map it to profile ops (`fetch`/`get`, `count`, `aggregate`, `exists`).

use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};

/// What a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadShape {
    /// Rows of data (or anything not recognised below).
    Rows,
    /// A single `COUNT(…)`.
    Count,
    /// Aggregates (`SUM`, `AVG`, `MIN`, `MAX`, several counts, `GROUP BY` with aggregates).
    Aggregate,
    /// `SELECT EXISTS(…)`.
    Exists,
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "group_concat",
    "bool_and",
    "bool_or",
    "every",
    "stddev",
    "variance",
    "json_agg",
    "jsonb_agg",
];

fn inner(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

fn strip(mut e: &Expr) -> &Expr {
    loop {
        match e {
            Expr::Nested(x) => e = x,
            Expr::Cast { expr, .. } => e = expr,
            _ => return e,
        }
    }
}

fn aggregate_name(e: &Expr) -> Option<String> {
    match strip(e) {
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let base = name.rsplit('.').next().unwrap_or(&name).trim_matches('"').to_owned();
            AGGREGATES.contains(&base.as_str()).then_some(base)
        }
        _ => None,
    }
}

/// The shape of a statement's result (`Rows` for anything that is not a plain SELECT).
pub fn read_shape(st: &Statement) -> ReadShape {
    let Statement::Query(q) = st else { return ReadShape::Rows };
    let SetExpr::Select(select) = q.body.as_ref() else { return ReadShape::Rows };
    let exprs: Vec<&Expr> = select.projection.iter().filter_map(inner).collect();
    if exprs.len() != select.projection.len() || exprs.is_empty() {
        return ReadShape::Rows;
    }
    if exprs.len() == 1 && matches!(strip(exprs[0]), Expr::Exists { negated: false, .. }) {
        return ReadShape::Exists;
    }
    let aggs: Vec<Option<String>> = exprs.iter().map(|e| aggregate_name(e)).collect();
    if aggs.len() == 1 && aggs[0].as_deref() == Some("count") {
        return ReadShape::Count;
    }
    if aggs.iter().any(Option::is_some) {
        return ReadShape::Aggregate;
    }
    ReadShape::Rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn shape(sql: &str) -> ReadShape {
        let st = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        read_shape(&st)
    }

    #[test]
    fn shapes() {
        assert_eq!(shape("SELECT * FROM post"), ReadShape::Rows);
        assert_eq!(shape("SELECT COUNT(*) AS num_items FROM (SELECT * FROM post) AS sub"), ReadShape::Count);
        assert_eq!(shape("SELECT count(id)::int8 FROM post"), ReadShape::Count);
        assert_eq!(shape("SELECT SUM(views), MAX(id) FROM post"), ReadShape::Aggregate);
        assert_eq!(shape("SELECT category_id, COUNT(*) FROM post GROUP BY category_id"), ReadShape::Aggregate);
        assert_eq!(shape("SELECT EXISTS(SELECT 1 FROM post WHERE id = 1)"), ReadShape::Exists);
        assert_eq!(shape("SELECT 1 FROM post UNION SELECT 2"), ReadShape::Rows);
    }
}
