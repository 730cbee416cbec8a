//! Turns a parsed statement into a [`Template`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    self, AssignmentTarget, BinaryOperator, ConflictTarget, Delete, Expr, FromTable, FunctionArg, FunctionArgExpr,
    Ident, InTarget, Insert, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, OnConflictAction, OnInsert,
    Query, Select, SelectItem, SetExpr, SqliteOnConflict, Statement, TableFactor, TableObject, TableWithJoins,
    UnaryOperator, Update, UpdateTableFromKind, Visit, Visitor,
};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::value::Value;

use super::template::{Atom, Binding, ColRef, Operand, Pred, Scope, Template, WriteTemplate, nnf};
use super::{AnalyzerConfig, Dialect, StatementKind};

/// Past this nesting depth of expressions/queries the walkers stop and fall back to table level.
const MAX_DEPTH: usize = 96;

/// Functions whose result changes between calls: a read using them should not be cached.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "now",
    "random",
    "rand",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
    "sysdate",
    "utc_timestamp",
    "utc_date",
    "utc_time",
    "curdate",
    "curtime",
    "unix_timestamp",
    "gen_random_uuid",
    "uuid",
    "uuid_short",
    "last_insert_id",
    "last_insert_rowid",
    "changes",
    "randomblob",
    "txid_current",
    "pg_sleep",
    "sleep",
];

fn is_volatile(name: &str) -> bool {
    VOLATILE_FUNCTIONS.contains(&name) || name.starts_with("uuid_generate")
}

thread_local! {
    /// The dialect whose identifier rules [`ident`] applies (set by [`with_dialect`]).
    static IDENT_DIALECT: std::cell::Cell<Dialect> = const { std::cell::Cell::new(Dialect::PostgreSql) };
}

/// Runs `f` with [`ident`] folding names by `dialect`'s rules.
pub(crate) fn with_dialect<T>(dialect: Dialect, f: impl FnOnce() -> T) -> T {
    let before = IDENT_DIALECT.with(|d| d.replace(dialect));
    let out = f();
    IDENT_DIALECT.with(|d| d.set(before));
    out
}

/// Normalised identifier, by the database's own folding rules:
/// * PostgreSQL folds unquoted names to lower case (ASCII letters only, in UTF-8 databases);
///   quoted names are exact;
/// * SQLite compares names case-insensitively for ASCII letters, quoted or not;
/// * MySQL/MariaDB compare column names case-insensitively; table names are exact on
///   case-sensitive file systems, so folding them merges at most two tables (coarser, never
///   stale).
pub(crate) fn ident(i: &Ident) -> String {
    match IDENT_DIALECT.with(std::cell::Cell::get) {
        Dialect::PostgreSql if i.quote_style.is_none() => i.value.to_ascii_lowercase(),
        Dialect::PostgreSql => i.value.clone(),
        Dialect::Sqlite => i.value.to_ascii_lowercase(),
        Dialect::MySql => i.value.to_lowercase(),
    }
}

/// Maps each placeholder token's source location to its parameter index.
#[derive(Debug, Default)]
pub(crate) struct ParamMap {
    by_location: BTreeMap<(u64, u64), usize>,
}

impl ParamMap {
    /// Tokenizes `sql` and numbers its placeholders: `$n`/`?n` → n-1, `?` → one more than the
    /// highest index so far (SQLite's rule; plain positional numbering when only `?` is used).
    pub(crate) fn new(dialect: &dyn sqlparser::dialect::Dialect, sql: &str) -> Self {
        let mut map = ParamMap::default();
        let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize_with_location() else {
            return map;
        };
        let mut next = 0usize;
        for t in tokens {
            if let Token::Placeholder(p) = &t.token {
                let idx = numbered(p).or(if p == "?" { Some(next) } else { None });
                if let Some(i) = idx {
                    next = next.max(i.saturating_add(1));
                    map.by_location.insert((t.span.start.line, t.span.start.column), i);
                }
            }
        }
        map
    }

    fn get(&self, loc: Location) -> Option<usize> {
        self.by_location.get(&(loc.line, loc.column)).copied()
    }
}

/// `$3` / `?3` → 2.
fn numbered(p: &str) -> Option<usize> {
    let digits = p.strip_prefix('$').or_else(|| p.strip_prefix('?'))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_sub(1)
}

/// A part of a FROM clause: its bindings and the conditions valid whenever its rows exist.
struct Part<'q> {
    members: Vec<usize>,
    conds: Vec<Cond<'q>>,
}

enum Cond<'q> {
    Expr(&'q Expr),
    ColEq(ColRef, ColRef),
}

/// Scope under construction.
#[derive(Default)]
struct ScopeB {
    bindings: Vec<Binding>,
    /// Reference name per binding (alias, or last part of the table name), and whether it is an
    /// alias.
    names: Vec<(String, bool)>,
    /// Select-list aliases: unqualified references to them are not columns.
    out_aliases: BTreeSet<String>,
    /// ON conditions of outer-join groups (NNF).
    groups: Vec<Pred>,
}

/// Builds templates.
pub(crate) struct Builder<'c> {
    cfg: &'c AnalyzerConfig,
    params: ParamMap,
    scopes: Vec<Scope>,
    cte_stack: Vec<BTreeSet<String>>,
    all_ctes: BTreeSet<String>,
    counts: BTreeMap<String, usize>,
    any_tables: BTreeSet<String>,
    truncated: bool,
    locking: bool,
    volatile: bool,
    /// Functions the statement calls (names folded).
    functions: Vec<String>,
    /// Schema (database) qualifiers of the relations the statement names.
    schemas: Vec<String>,
    max_param: Option<usize>,
    nested_write: Option<(StatementKind, WriteTemplate)>,
}

impl<'c> Builder<'c> {
    pub(crate) fn new(cfg: &'c AnalyzerConfig, params: ParamMap) -> Self {
        Builder {
            cfg,
            params,
            scopes: Vec::new(),
            cte_stack: Vec::new(),
            all_ctes: BTreeSet::new(),
            counts: BTreeMap::new(),
            any_tables: BTreeSet::new(),
            truncated: false,
            locking: false,
            volatile: false,
            functions: Vec::new(),
            schemas: Vec::new(),
            max_param: None,
            nested_write: None,
        }
    }

    /// Builds the template of one statement.
    pub(crate) fn build(mut self, st: &Statement) -> Template {
        let (mut kind, mut write) = self.statement(st, 0);
        if kind == StatementKind::Read
            && let Some((k, w)) = self.nested_write.take()
        {
            kind = k;
            write = Some(w);
            self.volatile = true;
        }
        if kind != StatementKind::Other {
            self.safety_net(st);
        } else {
            self.scopes.clear();
            self.any_tables.clear();
        }
        Template {
            kind,
            locking: self.locking,
            volatile: self.volatile,
            shape: super::shape::read_shape(st),
            scopes: self.scopes,
            any_tables: self.any_tables,
            write,
            max_param: self.max_param,
            functions: std::mem::take(&mut self.functions),
            schemas: std::mem::take(&mut self.schemas),
            fixed: std::sync::Mutex::new(None),
        }
    }

    /// Every relation the statement names that the walkers did not see (as often) becomes a
    /// table-level dependency; also detects volatile functions.
    fn safety_net(&mut self, st: &Statement) {
        struct Net<'a> {
            counts: BTreeMap<String, usize>,
            ctes: &'a BTreeSet<String>,
            b: &'a Builder<'a>,
            volatile: bool,
            functions: BTreeSet<String>,
            schemas: BTreeSet<String>,
        }
        impl Visitor for Net<'_> {
            type Break = ();
            fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
                if let [.., ObjectNamePart::Identifier(schema), _] = relation.0.as_slice()
                    && self.schemas.len() < 64
                {
                    self.schemas.insert(ident(schema));
                }
                if let Some(t) = self.b.table_name(relation)
                    && !self.ctes.contains(&t)
                {
                    *self.counts.entry(t).or_default() += 1;
                }
                ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                if let Expr::Function(f) = expr
                    && let Some(ObjectNamePart::Identifier(i)) = f.name.0.last()
                {
                    if is_volatile(&i.value.to_lowercase()) {
                        self.volatile = true;
                    }
                    if self.functions.len() < 64 {
                        self.functions.insert(ident(i));
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let (counts, volatile, functions, schemas) = {
            let mut net = Net {
                counts: BTreeMap::new(),
                ctes: &self.all_ctes,
                b: self,
                volatile: false,
                functions: BTreeSet::new(),
                schemas: BTreeSet::new(),
            };
            let _ = st.visit(&mut net);
            (net.counts, net.volatile, net.functions, net.schemas)
        };
        self.volatile |= volatile;
        self.functions = functions.into_iter().collect();
        self.schemas = schemas.into_iter().collect();
        for (t, n) in counts {
            if self.truncated || self.counts.get(&t).copied().unwrap_or(0) < n {
                self.any_tables.insert(t);
            }
        }
    }

    fn note_param(&mut self, i: usize) {
        self.max_param = Some(self.max_param.map_or(i, |m| m.max(i)));
    }

    /// Normalised table name; `None` for names that are not plain identifiers.
    ///
    /// The schema (database) qualifier is dropped: `myschema.post`, `public.post` and `post`
    /// (whatever `search_path` resolves it to) are one table for invalidation. Tables of the
    /// same name in two schemas share their keys: coarser, never stale.
    pub(crate) fn table_name(&self, n: &ObjectName) -> Option<String> {
        let mut last = None;
        for p in &n.0 {
            match p {
                ObjectNamePart::Identifier(i) => last = Some(ident(i)),
                ObjectNamePart::Function(_) => return None,
            }
        }
        last
    }

    fn count(&mut self, t: &str) {
        *self.counts.entry(t.to_owned()).or_default() += 1;
    }

    fn is_cte(&self, n: &ObjectName) -> bool {
        if n.0.len() != 1 {
            return false;
        }
        let Some(ObjectNamePart::Identifier(i)) = n.0.first() else { return false };
        let name = ident(i);
        self.cte_stack.iter().any(|f| f.contains(&name))
    }

    // ----------------------------------------------------------------------------- statements

    fn statement(&mut self, st: &Statement, depth: usize) -> (StatementKind, Option<WriteTemplate>) {
        match st {
            Statement::Query(q) => self.top_query(q, depth),
            Statement::Insert(ins) => (StatementKind::Insert, self.insert(ins, depth)),
            Statement::Update(up) => (StatementKind::Update, self.update(up, depth)),
            Statement::Delete(del) => (StatementKind::Delete, self.delete(del, depth)),
            Statement::Truncate(tr) => {
                let names: Vec<String> = tr.table_names.iter().filter_map(|t| self.table_name(&t.name)).collect();
                for n in &names {
                    self.count(n);
                }
                let mut names = names.into_iter();
                let Some(table) = names.next() else { return (StatementKind::Other, None) };
                let extra: Vec<String> = names.collect();
                let w = WriteTemplate {
                    target_sql: table.clone(),
                    table,
                    columns: Vec::new(),
                    rows: Vec::new(),
                    values_known: false,
                    scope: None,
                    returning: None,
                    upsert: false,
                    upsert_columns: Vec::new(),
                    conflict_columns: Vec::new(),
                    extra_tables: extra,
                    where_sql: None,
                    where_params: Vec::new(),
                    preimage_sql: None,
                };
                (StatementKind::Delete, Some(w))
            }
            _ => (StatementKind::Other, None),
        }
    }

    /// A top-level query: a read, or `WITH … INSERT/UPDATE/DELETE`.
    fn top_query(&mut self, q: &Query, depth: usize) -> (StatementKind, Option<WriteTemplate>) {
        if let SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) = q.body.as_ref() {
            self.push_ctes(q, depth);
            let out = self.statement(s, depth + 1);
            self.cte_stack.pop();
            return out;
        }
        self.query(q, depth);
        (StatementKind::Read, None)
    }

    fn nested_statement(&mut self, st: &Statement, depth: usize) {
        let (kind, w) = self.statement(st, depth + 1);
        self.volatile = true;
        if let (Some(w), None) = (w, &self.nested_write) {
            self.nested_write = Some((kind, w));
        }
    }

    fn push_ctes(&mut self, q: &Query, depth: usize) {
        self.cte_stack.push(BTreeSet::new());
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                self.all_ctes.insert(name.clone());
                if with.recursive
                    && let Some(f) = self.cte_stack.last_mut()
                {
                    f.insert(name.clone());
                }
                self.query(&cte.query, depth + 1);
                if let Some(f) = self.cte_stack.last_mut() {
                    f.insert(name);
                }
            }
        }
    }

    fn query(&mut self, q: &Query, depth: usize) {
        if depth > MAX_DEPTH {
            self.truncated = true;
            return;
        }
        self.push_ctes(q, depth);
        self.set_expr(&q.body, depth + 1);
        if !q.locks.is_empty() {
            self.locking = true;
        }
        if let Some(ob) = &q.order_by
            && let ast::OrderByKind::Expressions(exprs) = &ob.kind
        {
            for e in exprs {
                self.walk(&e.expr, depth + 1);
            }
        }
        if let Some(lc) = &q.limit_clause {
            self.walk_any(lc, depth + 1);
        }
        self.cte_stack.pop();
    }

    fn set_expr(&mut self, s: &SetExpr, depth: usize) {
        if depth > MAX_DEPTH {
            self.truncated = true;
            return;
        }
        match s {
            SetExpr::Select(sel) => self.select(sel, depth + 1),
            SetExpr::Query(q) => self.query(q, depth + 1),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, depth + 1);
                self.set_expr(right, depth + 1);
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    for e in &row.content {
                        self.walk(e, depth + 1);
                    }
                }
            }
            SetExpr::Table(t) => {
                if let Some(name) = &t.table_name {
                    let mut idents = Vec::new();
                    if let Some(s) = &t.schema_name {
                        idents.push(s.clone());
                    }
                    idents.push(name.clone());
                    let on = ObjectName::from(idents);
                    if let Some(table) = self.table_name(&on)
                        && !self.is_cte(&on)
                    {
                        self.count(&table);
                        self.any_tables.insert(table);
                    }
                }
            }
            SetExpr::Insert(st) | SetExpr::Update(st) | SetExpr::Delete(st) | SetExpr::Merge(st) => {
                self.nested_statement(st, depth)
            }
        }
    }

    // ----------------------------------------------------------------------------- SELECT

    fn select(&mut self, s: &Select, depth: usize) {
        let mut sc = ScopeB::default();
        for item in &s.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                sc.out_aliases.insert(ident(alias));
            }
        }
        let mut top: Vec<Cond<'_>> = Vec::new();
        for twj in &s.from {
            let part = self.twj(twj, &mut sc, depth + 1);
            top.extend(part.conds);
        }
        // Predicates.
        let mut preds = Vec::new();
        for c in &top {
            preds.push(self.cond_pred(c, &sc, depth + 1));
        }
        if let Some(w) = &s.selection {
            preds.push(self.pred(w, &sc, depth + 1));
        }
        let where_pred = nnf(Pred::And(preds), false);
        let groups = std::mem::take(&mut sc.groups);
        // Everything else: only subqueries matter.
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => self.walk(e, depth + 1),
                other => self.walk_any(other, depth + 1),
            }
        }
        if let ast::GroupByExpr::Expressions(exprs, _) = &s.group_by {
            for e in exprs {
                self.walk(e, depth + 1);
            }
        }
        if let Some(h) = &s.having {
            self.walk(h, depth + 1);
        }
        if let Some(q) = &s.qualify {
            self.walk(q, depth + 1);
        }
        if let Some(p) = &s.prewhere {
            self.walk(p, depth + 1);
        }
        for nw in &s.named_window {
            self.walk_any(nw, depth + 1);
        }
        for lv in &s.lateral_views {
            self.walk_any(lv, depth + 1);
        }
        if s.into.is_some() {
            self.volatile = true;
        }
        self.scopes.push(Scope { bindings: sc.bindings, where_pred, groups, target: None });
    }

    fn cond_pred(&mut self, c: &Cond<'_>, sc: &ScopeB, depth: usize) -> Pred {
        match c {
            Cond::Expr(e) => self.pred(e, sc, depth),
            Cond::ColEq(a, b) => Pred::Atom(Atom::ColEq(a.clone(), b.clone())),
        }
    }

    fn add_binding(&mut self, sc: &mut ScopeB, table: Option<String>, name: String, alias: bool) -> usize {
        sc.bindings.push(Binding { table, group: None, opaque: false });
        sc.names.push((name, alias));
        sc.bindings.len() - 1
    }

    fn factor<'q>(&mut self, tf: &'q TableFactor, sc: &mut ScopeB, depth: usize) -> Part<'q> {
        let mut part = Part { members: Vec::new(), conds: Vec::new() };
        if depth > MAX_DEPTH {
            self.truncated = true;
            return part;
        }
        match tf {
            TableFactor::Table { name, alias, args, .. } => {
                let alias_name = alias.as_ref().map(|a| ident(&a.name));
                if let Some(args) = args {
                    for a in &args.args {
                        self.walk_fn_arg(a, depth + 1);
                    }
                    let n = alias_name.unwrap_or_default();
                    part.members.push(self.add_binding(sc, None, n, true));
                } else if self.is_cte(name) {
                    let n = alias_name.clone().or_else(|| self.table_name(name)).unwrap_or_default();
                    part.members.push(self.add_binding(sc, None, n, alias_name.is_some()));
                } else if let Some(t) = self.table_name(name) {
                    self.count(&t);
                    let last = match name.0.last() {
                        Some(ObjectNamePart::Identifier(i)) => ident(i),
                        _ => t.clone(),
                    };
                    let (n, is_alias) = match alias_name {
                        Some(a) => (a, true),
                        None => (last, false),
                    };
                    let b = self.add_binding(sc, Some(t), n, is_alias);
                    part.members.push(b);
                }
            }
            TableFactor::Derived { subquery, alias, .. } => {
                self.query(subquery, depth + 1);
                let n = alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default();
                part.members.push(self.add_binding(sc, None, n, true));
            }
            TableFactor::NestedJoin { table_with_joins, .. } => {
                part = self.twj(table_with_joins, sc, depth + 1);
            }
            other => {
                // Table functions, UNNEST, PIVOT, …: no attribution; subqueries inside are
                // analysed, relations inside are caught by the safety net.
                self.walk_any(other, depth + 1);
                part.members.push(self.add_binding(sc, None, String::new(), true));
            }
        }
        part
    }

    fn twj<'q>(&mut self, twj: &'q TableWithJoins, sc: &mut ScopeB, depth: usize) -> Part<'q> {
        let mut left = self.factor(&twj.relation, sc, depth + 1);
        for j in &twj.joins {
            let right = self.factor(&j.relation, sc, depth + 1);
            let (kind, constraint) = match &j.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::StraightJoin(c) => (JoinKind::Inner, Some(c)),
                JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c) => (JoinKind::Left, Some(c)),
                JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::RightAnti(c) => (JoinKind::Right, Some(c)),
                JoinOperator::FullOuter(c) => (JoinKind::Full, Some(c)),
                JoinOperator::AsOf { constraint, match_condition } => {
                    self.walk(match_condition, depth + 1);
                    (JoinKind::Opaque, Some(constraint))
                }
                _ => (JoinKind::Opaque, None),
            };
            let mut on: Vec<Cond<'q>> = Vec::new();
            match constraint {
                Some(JoinConstraint::On(e)) => on.push(Cond::Expr(e)),
                Some(JoinConstraint::Using(cols)) | Some(JoinConstraint::UsingAlias(cols, _)) => {
                    if let ([l], [r]) = (left.members.as_slice(), right.members.as_slice()) {
                        for c in cols {
                            if let Some(ObjectNamePart::Identifier(i)) = c.0.last() {
                                let col = ident(i);
                                on.push(Cond::ColEq(
                                    ColRef { binding: *l, column: col.clone() },
                                    ColRef { binding: *r, column: col },
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
            match kind {
                JoinKind::Inner => {
                    left.conds.extend(right.conds);
                    left.conds.extend(on);
                    left.members.extend(right.members);
                }
                JoinKind::Left => {
                    let mut conds = right.conds;
                    conds.extend(on);
                    self.make_group(sc, &right.members, conds, depth);
                    left.members.extend(right.members);
                }
                JoinKind::Right => {
                    let mut conds = std::mem::take(&mut left.conds);
                    conds.extend(on);
                    self.make_group(sc, &left.members, conds, depth);
                    left.conds = right.conds;
                    left.members.extend(right.members);
                }
                JoinKind::Full | JoinKind::Opaque => {
                    for c in &on {
                        if let Cond::Expr(e) = c {
                            self.walk(e, depth + 1);
                        }
                    }
                    let opaque_left = matches!(kind, JoinKind::Full);
                    for &m in right.members.iter().chain(if opaque_left { left.members.iter() } else { [].iter() }) {
                        if let Some(b) = sc.bindings.get_mut(m) {
                            b.opaque = true;
                        }
                    }
                    if opaque_left {
                        for c in std::mem::take(&mut left.conds) {
                            if let Cond::Expr(e) = c {
                                self.walk(e, depth + 1);
                            }
                        }
                    }
                    for c in right.conds {
                        if let Cond::Expr(e) = c {
                            self.walk(e, depth + 1);
                        }
                    }
                    left.members.extend(right.members);
                }
            }
        }
        left
    }

    /// Puts `members` on the nullable side of an outer join whose ON (plus inner conditions of
    /// the side) is `conds`.
    fn make_group(&mut self, sc: &mut ScopeB, members: &[usize], conds: Vec<Cond<'_>>, depth: usize) {
        let nested = members.iter().any(|&m| sc.bindings.get(m).is_some_and(|b| b.group.is_some() || b.opaque));
        if nested {
            for &m in members {
                if let Some(b) = sc.bindings.get_mut(m) {
                    b.opaque = true;
                }
            }
            for c in conds {
                if let Cond::Expr(e) = c {
                    self.walk(e, depth + 1);
                }
            }
            return;
        }
        let preds: Vec<Pred> = conds.iter().map(|c| self.cond_pred(c, sc, depth + 1)).collect();
        let g = sc.groups.len();
        sc.groups.push(nnf(Pred::And(preds), false));
        for &m in members {
            if let Some(b) = sc.bindings.get_mut(m) {
                b.group = Some(g);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    Opaque,
}

fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(x) = e {
        e = x;
    }
    e
}

/// The operands of a chain of the same boolean operator, in order, without recursion.
fn flatten<'e>(e: &'e Expr, op: &BinaryOperator) -> Vec<&'e Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match x {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: o, .. } if o == op) => {
                stack.push(inner);
            }
            other => out.push(other),
        }
    }
    out
}

fn literal(v: &ast::Value) -> Option<Value> {
    use ast::Value as V;
    Some(match v {
        V::Number(s, _) => {
            if let Ok(i) = s.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(u) = s.parse::<u64>() {
                Value::UInt(u)
            } else if s.contains(['e', 'E']) {
                Value::Float(s.parse::<f64>().ok()?)
            } else {
                Value::Text(s.clone())
            }
        }
        V::SingleQuotedString(s)
        | V::DoubleQuotedString(s)
        | V::EscapedStringLiteral(s)
        | V::UnicodeStringLiteral(s)
        | V::NationalStringLiteral(s)
        | V::TripleSingleQuotedString(s)
        | V::TripleDoubleQuotedString(s) => Value::Text(s.clone()),
        V::DollarQuotedString(d) => Value::Text(d.value.clone()),
        V::SingleQuotedByteStringLiteral(s) | V::DoubleQuotedByteStringLiteral(s) => {
            Value::Bytes(s.as_bytes().to_vec())
        }
        V::HexStringLiteral(h) => {
            if h.len() % 2 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let bytes = (0..h.len() / 2)
                .map(|i| h.get(2 * i..2 * i + 2).and_then(|x| u8::from_str_radix(x, 16).ok()))
                .collect::<Option<Vec<u8>>>()?;
            Value::Bytes(bytes)
        }
        V::Boolean(b) => Value::Bool(*b),
        V::Null => Value::Null,
        _ => return None,
    })
}

fn negate(v: Value) -> Option<Value> {
    Some(match v {
        Value::Int(i) => Value::Int(i.checked_neg()?),
        Value::UInt(u) => {
            let s = format!("-{u}");
            s.parse::<i64>().map(Value::Int).unwrap_or(Value::Text(s))
        }
        Value::Float(f) => Value::Float(-f),
        Value::Text(t) if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !t.is_empty() => {
            Value::Text(format!("-{t}"))
        }
        _ => return None,
    })
}

fn object_last(n: &ObjectName) -> Option<String> {
    match n.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Some(ident(i)),
        _ => None,
    }
}

fn returning_names(items: &[SelectItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => ident(i),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(ident).unwrap_or_default(),
            SelectItem::ExprWithAlias { alias, .. } => ident(alias),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => "*".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

/// Byte offsets of the given (line, column) locations in `s` (1-based, columns in chars).
fn byte_offsets(s: &str, locs: &[Location]) -> Vec<Option<usize>> {
    let mut index: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let (mut line, mut col) = (1u64, 1u64);
    for (off, ch) in s.char_indices() {
        index.insert((line, col), off);
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    locs.iter().map(|l| index.get(&(l.line, l.column)).copied()).collect()
}

impl Builder<'_> {
    fn resolve(&self, e: &Expr, sc: &ScopeB) -> Option<ColRef> {
        let (qual, col): (&[Ident], String) = match strip_nested(e) {
            Expr::Identifier(i) => (&[], ident(i)),
            Expr::CompoundIdentifier(parts) => {
                let (last, rest) = parts.split_last()?;
                (rest, ident(last))
            }
            _ => return None,
        };
        let binding = match qual {
            [] => {
                if sc.out_aliases.contains(&col) || sc.bindings.len() != 1 {
                    return None;
                }
                0
            }
            [q] => {
                let q = ident(q);
                let mut found = sc.names.iter().enumerate().filter(|(_, (n, _))| *n == q).map(|(i, _)| i);
                let first = found.next()?;
                if found.next().is_some() {
                    return None;
                }
                first
            }
            many => {
                let name = self.table_name(&ObjectName::from(many.to_vec()))?;
                let mut found = sc
                    .bindings
                    .iter()
                    .zip(&sc.names)
                    .enumerate()
                    .filter(|(_, (b, (_, alias)))| !alias && b.table.as_deref() == Some(name.as_str()))
                    .map(|(i, _)| i);
                let first = found.next()?;
                if found.next().is_some() {
                    return None;
                }
                first
            }
        };
        if let Some(t) = sc.bindings.get(binding).and_then(|b| b.table.as_ref())
            && (self.cfg.skip_columns.contains(&col) || self.cfg.skip_columns.contains(&format!("{t}.{col}")))
        {
            return None;
        }
        Some(ColRef { binding, column: col })
    }

    fn operand(&mut self, e: &Expr) -> Option<Operand> {
        match e {
            Expr::Nested(x) => self.operand(x),
            Expr::Cast { expr, data_type, .. } => {
                Some(Operand::Cast(Box::new(self.operand(expr)?), data_type.to_string()))
            }
            Expr::Value(v) => self.value_operand(v),
            Expr::TypedString(ts) => match literal(&ts.value.value)? {
                Value::Text(t) => Some(Operand::Cast(Box::new(Operand::Lit(Value::Text(t))), ts.data_type.to_string())),
                _ => None,
            },
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match self.operand(expr)? {
                Operand::Lit(v) => negate(v).map(Operand::Lit),
                Operand::Cast(inner, t) if t == "numeric" => match *inner {
                    Operand::Lit(v) => Some(Operand::Cast(Box::new(Operand::Lit(negate(v)?)), t)),
                    _ => None,
                },
                Operand::Param(_) | Operand::Cast(..) => None,
            },
            Expr::UnaryOp { op: UnaryOperator::Plus, expr } => match self.operand(expr)? {
                Operand::Lit(v @ (Value::Int(_) | Value::UInt(_) | Value::Float(_))) => Some(Operand::Lit(v)),
                _ => None,
            },
            _ => None,
        }
    }

    fn value_operand(&mut self, v: &ast::ValueWithSpan) -> Option<Operand> {
        if let ast::Value::Placeholder(p) = &v.value {
            let i = self.params.get(v.span.start).or_else(|| numbered(p))?;
            self.note_param(i);
            return Some(Operand::Param(i));
        }
        let lit = literal(&v.value)?;
        // A decimal number literal is kept as text (exactly as written) but is a number: a
        // string column compares it numerically (MySQL), so it carries its type.
        if matches!((&v.value, &lit), (ast::Value::Number(..), Value::Text(_))) {
            return Some(Operand::Cast(Box::new(Operand::Lit(lit)), "numeric".to_owned()));
        }
        Some(Operand::Lit(lit))
    }

    fn is_pg(&self) -> bool {
        self.cfg.dialect == Dialect::PostgreSql
    }

    fn pred(&mut self, e: &Expr, sc: &ScopeB, depth: usize) -> Pred {
        if depth > MAX_DEPTH {
            self.truncated = true;
            return Pred::Some;
        }
        let d = depth + 1;
        match e {
            Expr::Nested(x) => self.pred(x, sc, d),
            Expr::BinaryOp { op: op @ (BinaryOperator::And | BinaryOperator::Or), .. } => {
                let kids: Vec<Pred> = flatten(e, op).into_iter().map(|k| self.pred(k, sc, d)).collect();
                if *op == BinaryOperator::And { Pred::And(kids) } else { Pred::Or(kids) }
            }
            Expr::UnaryOp { op: UnaryOperator::Not, expr } => Pred::Not(Box::new(self.pred(expr, sc, d))),
            Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => self.eq_pred(left, right, sc, d),
            // `a <> b` is `NOT (a = b)` (also under three-valued logic), so `NOT (x <> 1)` narrows.
            Expr::BinaryOp { left, op: BinaryOperator::NotEq, right } => {
                Pred::Not(Box::new(self.eq_pred(left, right, sc, d)))
            }
            Expr::IsNull(x) | Expr::IsNotNull(x) => match self.resolve(x, sc) {
                Some(c) => {
                    let a = Pred::Atom(Atom::IsNull(c));
                    if matches!(e, Expr::IsNull(_)) { a } else { Pred::Not(Box::new(a)) }
                }
                None => {
                    self.walk(x, d);
                    Pred::Some
                }
            },
            Expr::IsTrue(x) | Expr::IsFalse(x) => match (self.is_pg(), self.resolve(x, sc)) {
                (true, Some(c)) => Pred::Atom(Atom::Eq(c, Operand::Lit(Value::Bool(matches!(e, Expr::IsTrue(_)))))),
                _ => {
                    self.walk(x, d);
                    Pred::Some
                }
            },
            Expr::In { expr, target: InTarget::List(list), negated, .. } => {
                let col = self.resolve(expr, sc);
                let ops: Option<Vec<Operand>> = match col {
                    Some(_) => list.iter().map(|x| self.operand(x)).collect(),
                    None => None,
                };
                match (col, ops) {
                    (Some(c), Some(ops)) => {
                        let a = Pred::Atom(Atom::In(c, ops));
                        if *negated { Pred::Not(Box::new(a)) } else { a }
                    }
                    _ => {
                        self.walk(e, d);
                        Pred::Some
                    }
                }
            }
            Expr::AnyOp { left, compare_op: BinaryOperator::Eq, right, .. } => {
                if let Some(c) = self.resolve(left, sc) {
                    match strip_nested(right) {
                        Expr::Array(arr) => {
                            let ops: Option<Vec<Operand>> = arr.elem.iter().map(|x| self.operand(x)).collect();
                            if let Some(ops) = ops {
                                return Pred::Atom(Atom::In(c, ops));
                            }
                        }
                        other => {
                            if let Some(op) = self.operand(other) {
                                return Pred::Atom(Atom::AnyEq(c, op));
                            }
                        }
                    }
                }
                self.walk(e, d);
                Pred::Some
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => match (self.is_pg(), self.resolve(e, sc)) {
                (true, Some(c)) => Pred::Atom(Atom::BoolCol(c)),
                _ => Pred::Some,
            },
            Expr::Value(v) => match &v.value {
                ast::Value::Boolean(true) => Pred::True,
                ast::Value::Boolean(false) | ast::Value::Null => Pred::False,
                _ => Pred::Some,
            },
            _ => {
                self.walk(e, d);
                Pred::Some
            }
        }
    }

    fn eq_pred(&mut self, l: &Expr, r: &Expr, sc: &ScopeB, depth: usize) -> Pred {
        let lc = self.resolve(l, sc);
        let rc = self.resolve(r, sc);
        match (lc, rc) {
            (Some(a), Some(b)) => Pred::Atom(Atom::ColEq(a, b)),
            (Some(c), None) => match self.operand(r) {
                Some(op) => Pred::Atom(Atom::Eq(c, op)),
                None => {
                    self.walk(r, depth);
                    Pred::Some
                }
            },
            (None, Some(c)) => match self.operand(l) {
                Some(op) => Pred::Atom(Atom::Eq(c, op)),
                None => {
                    self.walk(l, depth);
                    Pred::Some
                }
            },
            (None, None) => {
                let lo = self.operand(l);
                let ro = self.operand(r);
                match (lo, ro) {
                    (Some(a), Some(b)) => Pred::Atom(Atom::ConstEq(a, b)),
                    _ => {
                        self.walk(l, depth);
                        self.walk(r, depth);
                        Pred::Some
                    }
                }
            }
        }
    }

    /// Finds and analyses the subqueries of an expression (iterative along operator chains).
    fn walk(&mut self, e: &Expr, depth: usize) {
        if depth > MAX_DEPTH {
            self.truncated = true;
            return;
        }
        let d = depth + 1;
        let mut cur = e;
        loop {
            match cur {
                Expr::Subquery(q) => return self.query(q, d),
                Expr::Exists { subquery, .. } => return self.query(subquery, d),
                Expr::In { expr, target, .. } => {
                    match target {
                        InTarget::Subquery(q) => self.query(q, d),
                        InTarget::List(list) => {
                            for x in list {
                                self.walk(x, d);
                            }
                        }
                        other => self.walk_any(other, d),
                    }
                    cur = expr;
                }
                Expr::BinaryOp { left, right, .. }
                | Expr::AnyOp { left, right, .. }
                | Expr::AllOp { left, right, .. }
                | Expr::IsDistinctFrom(left, right)
                | Expr::IsNotDistinctFrom(left, right) => {
                    self.walk(right, d);
                    cur = left;
                }
                Expr::Like { expr, pattern, .. }
                | Expr::ILike { expr, pattern, .. }
                | Expr::SimilarTo { expr, pattern, .. }
                | Expr::RLike { expr, pattern, .. } => {
                    self.walk(pattern, d);
                    cur = expr;
                }
                Expr::Between { expr, low, high, .. } => {
                    self.walk(low, d);
                    self.walk(high, d);
                    cur = expr;
                }
                Expr::Nested(x)
                | Expr::UnaryOp { expr: x, .. }
                | Expr::Cast { expr: x, .. }
                | Expr::Collate { expr: x, .. }
                | Expr::IsNull(x)
                | Expr::IsNotNull(x)
                | Expr::IsTrue(x)
                | Expr::IsFalse(x)
                | Expr::IsNotTrue(x)
                | Expr::IsNotFalse(x)
                | Expr::IsUnknown(x)
                | Expr::IsNotUnknown(x) => cur = x,
                Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::Value(_)
                | Expr::TypedString(_)
                | Expr::Wildcard(_)
                | Expr::QualifiedWildcard(..) => return,
                other => return self.walk_any(other, d),
            }
        }
    }

    /// Generic fallback: analyses every outermost query found inside `node`.
    fn walk_any<V: Visit>(&mut self, node: &V, depth: usize) {
        struct Finder<'b, 'c> {
            b: &'b mut Builder<'c>,
            nest: usize,
            depth: usize,
        }
        impl Visitor for Finder<'_, '_> {
            type Break = ();
            fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
                if self.nest == 0 {
                    self.b.query(q, self.depth + 1);
                }
                self.nest += 1;
                ControlFlow::Continue(())
            }
            fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
                self.nest = self.nest.saturating_sub(1);
                ControlFlow::Continue(())
            }
        }
        if depth > MAX_DEPTH {
            self.truncated = true;
            return;
        }
        let _ = node.visit(&mut Finder { b: self, nest: 0, depth });
    }

    fn walk_fn_arg(&mut self, a: &FunctionArg, depth: usize) {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
            | FunctionArg::Named { arg: FunctionArgExpr::Expr(e), .. } => self.walk(e, depth),
            other => self.walk_any(other, depth),
        }
    }

    // ----------------------------------------------------------------------------- writes

    fn empty_write(table: String, target_sql: String) -> WriteTemplate {
        WriteTemplate {
            table,
            columns: Vec::new(),
            rows: Vec::new(),
            values_known: false,
            scope: None,
            returning: None,
            upsert: false,
            upsert_columns: Vec::new(),
            conflict_columns: Vec::new(),
            extra_tables: Vec::new(),
            where_sql: None,
            where_params: Vec::new(),
            target_sql,
            preimage_sql: None,
        }
    }

    fn assignments(&mut self, assigns: &[ast::Assignment], depth: usize) -> (Vec<String>, Vec<Option<Operand>>) {
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        for a in assigns {
            match &a.target {
                AssignmentTarget::ColumnName(n) => {
                    cols.push(object_last(n).unwrap_or_default());
                    let op = self.operand(&a.value);
                    if op.is_none() {
                        self.walk(&a.value, depth);
                    }
                    vals.push(op);
                }
                AssignmentTarget::Tuple(ns) => {
                    for n in ns {
                        cols.push(object_last(n).unwrap_or_default());
                        vals.push(None);
                    }
                    self.walk(&a.value, depth);
                }
            }
        }
        (cols, vals)
    }

    fn insert(&mut self, ins: &Insert, depth: usize) -> Option<WriteTemplate> {
        let d = depth + 1;
        let TableObject::TableName(name) = &ins.table else {
            self.walk_any(ins, d);
            return None;
        };
        let table = self.table_name(name)?;
        self.count(&table);
        let target_sql = match &ins.table_alias {
            Some(a) => format!("{name} AS {}", a.alias),
            None => name.to_string(),
        };
        let mut w = Self::empty_write(table, target_sql);
        w.columns = ins.columns.iter().map(|c| object_last(c).unwrap_or_default()).collect();
        if let Some(src) = &ins.source {
            if let SetExpr::Values(v) = src.body.as_ref() {
                w.values_known = true;
                for row in &v.rows {
                    let r: Vec<Option<Operand>> = row.content.iter().map(|e| self.operand(e)).collect();
                    w.rows.push(r);
                }
            }
            self.query(src, d);
        } else if !ins.assignments.is_empty() {
            let (cols, vals) = self.assignments(&ins.assignments, d);
            w.columns = cols;
            w.rows.push(vals);
            w.values_known = true;
        }
        match &ins.on {
            Some(OnInsert::DuplicateKeyUpdate(assigns)) => {
                w.upsert = true;
                w.upsert_columns = self.assignments(assigns, d).0;
            }
            Some(OnInsert::OnConflict(oc)) => {
                if let Some(ConflictTarget::Columns { columns, .. }) = &oc.conflict_target {
                    w.conflict_columns = columns.iter().map(ident).collect();
                }
                if let OnConflictAction::DoUpdate(du) = &oc.action {
                    w.upsert = true;
                    w.upsert_columns = self.assignments(&du.assignments, d).0;
                    if let Some(sel) = &du.selection {
                        self.walk(sel, d);
                    }
                }
            }
            Some(other) => self.walk_any(other, d),
            None => {}
        }
        if ins.replace_into || matches!(ins.or, Some(SqliteOnConflict::Replace)) {
            w.upsert = true;
        }
        w.returning = ins.returning.as_deref().map(returning_names);
        if let Some(items) = &ins.returning {
            for i in items {
                self.walk_any(i, d);
            }
        }
        Some(w)
    }

    fn update(&mut self, up: &Update, depth: usize) -> Option<WriteTemplate> {
        let d = depth + 1;
        let TableFactor::Table { name, args: None, .. } = &up.table.relation else {
            self.walk_any(up, d);
            return None;
        };
        let table = self.table_name(name)?;
        let mut sc = ScopeB::default();
        let part = self.twj(&up.table, &mut sc, d);
        let target = *part.members.first()?;
        let mut conds = part.conds;
        let single = up.table.joins.is_empty() && up.from.is_none();
        if let Some(UpdateTableFromKind::BeforeSet(v) | UpdateTableFromKind::AfterSet(v)) = &up.from {
            for twj in v {
                conds.extend(self.twj(twj, &mut sc, d).conds);
            }
        }
        let (cols, vals) = self.assignments(&up.assignments, d);
        let mut w = Self::empty_write(table, up.table.relation.to_string());
        w.columns = cols;
        w.rows.push(vals);
        w.values_known = true;
        self.finish_dml(&mut w, sc, conds, up.selection.as_ref(), target, single, d);
        w.returning = up.returning.as_deref().map(returning_names);
        if let Some(items) = &up.returning {
            for i in items {
                self.walk_any(i, d);
            }
        }
        Some(w)
    }

    fn delete(&mut self, del: &Delete, depth: usize) -> Option<WriteTemplate> {
        let d = depth + 1;
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &del.from;
        let mut sc = ScopeB::default();
        let mut conds = Vec::new();
        let mut first = None;
        for twj in from {
            let part = self.twj(twj, &mut sc, d);
            first = first.or(part.members.first().copied());
            conds.extend(part.conds);
        }
        if let Some(using) = &del.using {
            for twj in using {
                conds.extend(self.twj(twj, &mut sc, d).conds);
            }
        }
        let single = del.tables.len() <= 1
            && from.len() == 1
            && from.first().is_some_and(|t| t.joins.is_empty())
            && del.using.is_none();
        let by_name = |n: &ObjectName, sc: &ScopeB| -> Option<usize> {
            let last = object_last(n)?;
            sc.names.iter().position(|(x, _)| *x == last)
        };
        let target = match del.tables.first() {
            Some(n) => by_name(n, &sc)?,
            None => first?,
        };
        let table = sc.bindings.get(target)?.table.clone()?;
        let mut extra = Vec::new();
        for n in del.tables.iter().skip(1) {
            if let Some(t) = by_name(n, &sc).and_then(|i| sc.bindings.get(i)).and_then(|b| b.table.clone()) {
                extra.push(t);
            }
        }
        let target_sql = from.first().map(|t| t.relation.to_string()).unwrap_or_else(|| table.clone());
        let mut w = Self::empty_write(table, target_sql);
        w.extra_tables = extra;
        self.finish_dml(&mut w, sc, conds, del.selection.as_ref(), target, single, d);
        w.returning = del.returning.as_deref().map(returning_names);
        if let Some(items) = &del.returning {
            for i in items {
                self.walk_any(i, d);
            }
        }
        Some(w)
    }

    /// Builds the scope of an UPDATE/DELETE and the WHERE rendering fields.
    #[allow(clippy::too_many_arguments)]
    fn finish_dml(
        &mut self,
        w: &mut WriteTemplate,
        mut sc: ScopeB,
        conds: Vec<Cond<'_>>,
        selection: Option<&Expr>,
        target: usize,
        single: bool,
        depth: usize,
    ) {
        let mut preds: Vec<Pred> = conds.iter().map(|c| self.cond_pred(c, &sc, depth)).collect();
        if let Some(sel) = selection {
            preds.push(self.pred(sel, &sc, depth));
            let (sql, params, renumbered) = self.where_info(sel);
            w.where_sql = Some(sql);
            w.where_params = params;
            if single && let Some(r) = renumbered {
                let lock = if self.cfg.dialect == Dialect::Sqlite { "" } else { " FOR UPDATE" };
                w.preimage_sql = Some(format!("SELECT * FROM {} WHERE {r}{lock}", w.target_sql));
            }
        }
        let groups = std::mem::take(&mut sc.groups);
        let where_pred = nnf(Pred::And(preds), false);
        w.scope = Some(self.scopes.len());
        self.scopes.push(Scope { bindings: sc.bindings, where_pred, groups, target: Some(target) });
    }

    /// The WHERE text, the parameter index of each of its placeholders in textual order, and the
    /// text with placeholders renumbered `$1..`/`?1..`/`?` in that order.
    fn where_info(&self, sel: &Expr) -> (String, Vec<usize>, Option<String>) {
        let sql = sel.to_string();
        let mut found: Vec<((u64, u64), Option<usize>)> = Vec::new();
        let _ = ast::visit_expressions(sel, |e| {
            if let Expr::Value(v) = e
                && let ast::Value::Placeholder(p) = &v.value
            {
                let loc = (v.span.start.line, v.span.start.column);
                found.push((loc, self.params.get(v.span.start).or_else(|| numbered(p))));
            }
            ControlFlow::<()>::Continue(())
        });
        found.sort_by_key(|(loc, _)| *loc);
        let params: Option<Vec<usize>> = found.iter().map(|(_, i)| *i).collect();
        let renumbered = params.as_ref().and_then(|ps| self.renumber(&sql, ps.len()));
        (sql, params.unwrap_or_default(), renumbered)
    }

    fn renumber(&self, sql: &str, expected: usize) -> Option<String> {
        let dialect = super::sp_dialect(self.cfg.dialect);
        let tokens = Tokenizer::new(dialect.as_ref(), sql).tokenize_with_location().ok()?;
        let ph: Vec<(Location, usize)> = tokens
            .iter()
            .filter_map(|t| match &t.token {
                Token::Placeholder(p) => Some((t.span.start, p.len())),
                _ => None,
            })
            .collect();
        if ph.len() != expected {
            return None;
        }
        let locs: Vec<Location> = ph.iter().map(|(l, _)| *l).collect();
        let offs = byte_offsets(sql, &locs);
        let mut out = String::with_capacity(sql.len() + 8);
        let mut pos = 0usize;
        for (k, ((_, len), off)) in ph.iter().zip(offs).enumerate() {
            let off = off?;
            out.push_str(sql.get(pos..off)?);
            match self.cfg.dialect {
                Dialect::PostgreSql => out.push_str(&format!("${}", k + 1)),
                Dialect::Sqlite => out.push_str(&format!("?{}", k + 1)),
                Dialect::MySql => out.push('?'),
            }
            pos = off + len;
        }
        out.push_str(sql.get(pos..)?);
        Some(out)
    }
}
