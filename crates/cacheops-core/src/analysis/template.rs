//! The memoised form of an analysis ("template") and its evaluation against bind values.
//!
//! A template holds, per query scope, the bindings (table occurrences) and predicates in negation
//! normal form whose operands are literals or parameter references. Evaluating it substitutes the
//! parameters, builds DNFs, propagates join equalities and attributes terms to tables.

use std::collections::{BTreeMap, BTreeSet};

use crate::dnf::{Conj, Dependencies, Dnf};
use crate::equality::{Catalog, CatalogSnapshot, Relation, key_column};
use crate::value::Value;

use super::{Analysis, AnalysisError, StatementKind, WriteTarget};

/// A literal or a reference to a bind parameter (0-based index), possibly cast to a type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Lit(Value),
    Param(usize),
    /// `operand::type`, `CAST(operand AS type)`, `type 'literal'`: the type name as written.
    Cast(Box<Operand>, String),
}

impl Operand {
    /// The outermost cast's type name, if any.
    fn cast(&self) -> Option<&str> {
        match self {
            Operand::Cast(_, t) => Some(t),
            _ => None,
        }
    }
}

/// A column of a binding of the scope the predicate belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ColRef {
    pub binding: usize,
    pub column: String,
}

/// A predicate atom.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Atom {
    /// `col = operand`.
    Eq(ColRef, Operand),
    /// `col IN (operands)`.
    In(ColRef, Vec<Operand>),
    /// `col = ANY(operand)`, the operand being an array.
    AnyEq(ColRef, Operand),
    /// `col IS NULL`.
    IsNull(ColRef),
    /// A bare boolean column: positive is `col = true`, negated is `col = false`.
    BoolCol(ColRef),
    /// `col = col` (join equality).
    ColEq(ColRef, ColRef),
    /// `operand = operand` between integer-like constants (`1 = 0`).
    ConstEq(Operand, Operand),
}

/// A predicate. Built with `Not`/`Some`, then converted by [`nnf`] to a tree of only
/// `True`/`False`/`Atom`/`And`/`Or`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pred {
    True,
    False,
    /// Some condition that cannot be represented ("no constraint", but not negatable).
    Some,
    Atom(Atom),
    Not(Box<Pred>),
    And(Vec<Pred>),
    Or(Vec<Pred>),
}

/// Converts to negation normal form; `Some` and negated atoms become `True` (no constraint),
/// except a negated bare boolean column, which becomes `col = false`. A negated `ConstEq` is kept
/// as a negated constant comparison.
pub(crate) fn nnf(p: Pred, neg: bool) -> Pred {
    match p {
        Pred::True => {
            if neg {
                Pred::False
            } else {
                Pred::True
            }
        }
        Pred::False => {
            if neg {
                Pred::True
            } else {
                Pred::False
            }
        }
        Pred::Some => Pred::True,
        Pred::Not(x) => nnf(*x, !neg),
        Pred::And(v) => {
            let kids = v.into_iter().map(|c| nnf(c, neg));
            if neg { or_of(kids) } else { and_of(kids) }
        }
        Pred::Or(v) => {
            let kids = v.into_iter().map(|c| nnf(c, neg));
            if neg { and_of(kids) } else { or_of(kids) }
        }
        Pred::Atom(a) => {
            if !neg {
                return Pred::Atom(a);
            }
            match a {
                Atom::BoolCol(c) => Pred::Atom(Atom::Eq(c, Operand::Lit(Value::Bool(false)))),
                Atom::ConstEq(x, y) => Pred::Not(Box::new(Pred::Atom(Atom::ConstEq(x, y)))),
                _ => Pred::True,
            }
        }
    }
}

fn and_of(kids: impl Iterator<Item = Pred>) -> Pred {
    let mut out = Vec::new();
    for k in kids {
        match k {
            Pred::True => {}
            Pred::False => return Pred::False,
            Pred::And(v) => out.extend(v),
            other => out.push(other),
        }
    }
    match out.len() {
        0 => Pred::True,
        1 => out.pop().unwrap_or(Pred::True),
        _ => Pred::And(out),
    }
}

fn or_of(kids: impl Iterator<Item = Pred>) -> Pred {
    let mut out = Vec::new();
    for k in kids {
        match k {
            Pred::False => {}
            Pred::True => return Pred::True,
            Pred::Or(v) => out.extend(v),
            other => out.push(other),
        }
    }
    match out.len() {
        0 => Pred::False,
        1 => out.pop().unwrap_or(Pred::False),
        _ => Pred::Or(out),
    }
}

/// A table occurrence (or a derived table / CTE reference, `table: None`) in a scope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binding {
    pub table: Option<String>,
    /// The outer-join group this binding is on the nullable side of.
    pub group: Option<usize>,
    /// Attribution is unsafe (FULL JOIN, nested outer joins, …): table level.
    pub opaque: bool,
}

/// One query scope (a SELECT, or the body of an UPDATE/DELETE).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scope {
    pub bindings: Vec<Binding>,
    /// WHERE and inner-join ON conditions (NNF).
    pub where_pred: Pred,
    /// ON conditions of outer-join groups (NNF).
    pub groups: Vec<Pred>,
    /// The write target binding (UPDATE/DELETE), whose DNF is the write filter, not a read.
    pub target: Option<usize>,
}

/// The write part of a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WriteTemplate {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<Operand>>>,
    pub values_known: bool,
    /// Scope whose `target` binding gives the filter.
    pub scope: Option<usize>,
    pub returning: Option<Vec<String>>,
    pub upsert: bool,
    pub upsert_columns: Vec<String>,
    pub conflict_columns: Vec<String>,
    pub extra_tables: Vec<String>,
    pub where_sql: Option<String>,
    pub where_params: Vec<usize>,
    pub target_sql: String,
    pub preimage_sql: Option<String>,
}

/// A memoised analysis.
#[derive(Debug)]
pub(crate) struct Template {
    pub kind: StatementKind,
    pub locking: bool,
    pub volatile: bool,
    pub shape: super::ReadShape,
    pub scopes: Vec<Scope>,
    /// Tables that are dependencies at table level whatever the conditions.
    pub any_tables: BTreeSet<String>,
    pub write: Option<WriteTemplate>,
    /// Highest parameter index referenced by an operand.
    pub max_param: Option<usize>,
    /// Functions the statement calls.
    pub functions: Vec<String>,
    /// Schema qualifiers of the relations it names.
    pub schemas: Vec<String>,
    /// The evaluated analysis when it does not depend on parameters, with the catalog
    /// generation it was evaluated under.
    pub fixed: std::sync::Mutex<Option<(u64, Analysis)>>,
}

/// Evaluation limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub in_list: usize,
    pub dnf: usize,
    /// Intermediate DNF size limit.
    pub work: usize,
}

impl Caps {
    pub(crate) fn new(in_list: usize, dnf: usize) -> Self {
        Caps { in_list, dnf, work: dnf.saturating_mul(4).max(16) }
    }
}

/// A value with its canonical rendering in its column (equality and ordering use the rendering
/// only).
#[derive(Debug, Clone)]
struct RVal {
    rendered: String,
    value: Value,
}

impl PartialEq for RVal {
    fn eq(&self, other: &Self) -> bool {
        self.rendered == other.rendered
    }
}
impl Eq for RVal {}
impl PartialOrd for RVal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RVal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rendered.cmp(&other.rendered)
    }
}

type Key = (usize, String);

/// A conjunction during evaluation: positive `binding.col = value` terms and join equalities.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct EConj {
    eqs: BTreeMap<Key, RVal>,
    coleqs: BTreeSet<(Key, Key)>,
}

impl EConj {
    fn is_empty(&self) -> bool {
        self.eqs.is_empty() && self.coleqs.is_empty()
    }

    /// ANDs another conj in; `None` on contradiction.
    fn merge(&self, other: &EConj) -> Option<EConj> {
        let mut out = self.clone();
        for (k, v) in &other.eqs {
            match out.eqs.get(k) {
                Some(e) if e != v => return None,
                Some(_) => {}
                None => {
                    out.eqs.insert(k.clone(), v.clone());
                }
            }
        }
        out.coleqs.extend(other.coleqs.iter().cloned());
        Some(out)
    }

    /// Propagates values across join equalities (transitively). `None` when impossible.
    /// Values cross only between columns that compare alike (`same`); between others the
    /// database converts types, so a value is not carried over and no contradiction is drawn.
    fn propagate(mut self, same: &dyn Fn(&Key, &Key) -> bool) -> Option<EConj> {
        if self.coleqs.is_empty() {
            return Some(self);
        }
        for _ in 0..=self.coleqs.len() {
            let mut changed = false;
            for (x, y) in &self.coleqs {
                let (vx, vy) = (self.eqs.get(x).cloned(), self.eqs.get(y).cloned());
                if !same(x, y) {
                    if vx.as_ref().is_some_and(|v| v.value.is_null()) || vy.as_ref().is_some_and(|v| v.value.is_null())
                    {
                        return None;
                    }
                    continue;
                }
                match (vx, vy) {
                    (Some(a), Some(b)) => {
                        if a != b || a.value.is_null() {
                            return None;
                        }
                    }
                    (Some(a), None) => {
                        if a.value.is_null() {
                            return None;
                        }
                        self.eqs.insert(y.clone(), a);
                        changed = true;
                    }
                    (None, Some(b)) => {
                        if b.value.is_null() {
                            return None;
                        }
                        self.eqs.insert(x.clone(), b);
                        changed = true;
                    }
                    (None, None) => {}
                }
            }
            if !changed {
                break;
            }
        }
        Some(self)
    }

    /// The terms on one binding, as a public conj.
    fn clean(&self, binding: usize) -> Option<Conj> {
        Conj::from_rendered(
            self.eqs
                .iter()
                .filter(|((b, _), _)| *b == binding)
                .map(|((_, col), v)| (key_column(col), v.value.clone(), v.rendered.clone())),
        )
    }

    /// Whether a NULL-extended row of `group` can never satisfy this conj.
    fn null_rejecting(&self, in_group: &dyn Fn(usize) -> bool) -> bool {
        self.eqs.iter().any(|((b, _), v)| in_group(*b) && !v.value.is_null())
            || self.coleqs.iter().any(|((a, _), (b, _))| in_group(*a) || in_group(*b))
    }

    fn without(&self, in_group: &dyn Fn(usize) -> bool) -> EConj {
        EConj {
            eqs: self.eqs.iter().filter(|((b, _), _)| !in_group(*b)).map(|(k, v)| (k.clone(), v.clone())).collect(),
            coleqs: self.coleqs.iter().filter(|((a, _), (b, _))| !in_group(*a) && !in_group(*b)).cloned().collect(),
        }
    }
}

/// An intermediate DNF: `{}` is false, `{∅}` is true.
type DSet = BTreeSet<EConj>;

fn d_true() -> DSet {
    let mut s = DSet::new();
    s.insert(EConj::default());
    s
}

fn is_true(d: &DSet) -> bool {
    d.iter().any(EConj::is_empty)
}

/// Evaluation context: bind values, caps, the column classes and the scope's bindings.
pub(crate) struct Ctx<'p> {
    pub params: &'p [Value],
    pub caps: Caps,
    pub catalog: &'p CatalogSnapshot,
    pub bindings: &'p [Binding],
}

impl Ctx<'_> {
    fn value(&self, op: &Operand) -> Result<Value, AnalysisError> {
        match op {
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Param(i) => {
                self.params.get(*i).cloned().ok_or(AnalysisError::ParamOutOfRange { index: *i, len: self.params.len() })
            }
            Operand::Cast(inner, _) => self.value(inner),
        }
    }

    fn table(&self, binding: usize) -> Option<&str> {
        self.bindings.get(binding).and_then(|b| b.table.as_deref())
    }

    /// `c = v` as a one-conj DNF, or "no constraint" when `v`'s canonical form in `c`'s column
    /// is not certain.
    fn single(&self, c: &ColRef, v: Value, cast: Option<&str>) -> DSet {
        let rendered = self.table(c.binding).and_then(|t| self.catalog.canonical(t, &c.column, &v, cast));
        match rendered {
            Some(rendered) => {
                let mut e = EConj::default();
                e.eqs.insert((c.binding, c.column.clone()), RVal { rendered, value: v });
                std::iter::once(e).collect()
            }
            None => d_true(),
        }
    }

    fn list_dnf(&self, c: &ColRef, values: Vec<(Value, Option<&str>)>) -> DSet {
        let values: Vec<_> = values.into_iter().filter(|(v, _)| !v.is_null()).collect();
        if values.is_empty() {
            return DSet::new();
        }
        if values.len() >= self.caps.in_list {
            return d_true();
        }
        let mut out = DSet::new();
        for (v, cast) in values {
            let d = self.single(c, v, cast);
            if is_true(&d) {
                return d;
            }
            out.extend(d);
        }
        out
    }

    fn atom(&self, a: &Atom) -> Result<DSet, AnalysisError> {
        Ok(match a {
            Atom::Eq(c, op) => {
                let v = self.value(op)?;
                if v.is_null() { DSet::new() } else { self.single(c, v, op.cast()) }
            }
            Atom::In(c, ops) => {
                let values = ops.iter().map(|o| Ok((self.value(o)?, o.cast()))).collect::<Result<Vec<_>, _>>()?;
                self.list_dnf(c, values)
            }
            Atom::AnyEq(c, op) => match self.value(op)? {
                Value::Array(items) => {
                    // `= ANY($1::int[])`: the elements are cast to `int`; another cast is unknown.
                    let cast = match op.cast() {
                        None => Ok(None),
                        Some(t) => t.trim().strip_suffix("[]").map(Some).ok_or(()),
                    };
                    match cast {
                        Ok(cast) => self.list_dnf(c, items.into_iter().map(|v| (v, cast)).collect()),
                        Err(()) => d_true(),
                    }
                }
                Value::Null => DSet::new(),
                _ => d_true(),
            },
            Atom::IsNull(c) => self.single(c, Value::Null, None),
            Atom::BoolCol(c) => self.single(c, Value::Bool(true), None),
            Atom::ColEq(x, y) => {
                let kx = (x.binding, x.column.clone());
                let ky = (y.binding, y.column.clone());
                if kx == ky {
                    return Ok(d_true());
                }
                let pair = if kx < ky { (kx, ky) } else { (ky, kx) };
                let mut c = EConj::default();
                c.coleqs.insert(pair);
                std::iter::once(c).collect()
            }
            Atom::ConstEq(x, y) => match const_eq(&self.value(x)?, &self.value(y)?) {
                Some(false) => DSet::new(),
                _ => d_true(),
            },
        })
    }

    fn dnf(&self, p: &Pred) -> Result<DSet, AnalysisError> {
        match p {
            Pred::True | Pred::Some => Ok(d_true()),
            Pred::False => Ok(DSet::new()),
            Pred::Atom(a) => self.atom(a),
            Pred::Not(inner) => match inner.as_ref() {
                // Only negated constant comparisons survive NNF.
                Pred::Atom(Atom::ConstEq(x, y)) => match const_eq(&self.value(x)?, &self.value(y)?) {
                    Some(true) => Ok(DSet::new()),
                    _ => Ok(d_true()),
                },
                _ => Ok(d_true()),
            },
            Pred::Or(kids) => {
                let mut out = DSet::new();
                for k in kids {
                    let d = self.dnf(k)?;
                    if is_true(&d) {
                        return Ok(d_true());
                    }
                    out.extend(d);
                    if out.len() > self.caps.work {
                        return Ok(d_true());
                    }
                }
                Ok(out)
            }
            Pred::And(kids) => {
                let mut acc = d_true();
                for k in kids {
                    let d = self.dnf(k)?;
                    if d.is_empty() {
                        return Ok(DSet::new());
                    }
                    if is_true(&d) {
                        continue;
                    }
                    if let Some(next) = product(&acc, &d, self.caps.work) {
                        if next.is_empty() {
                            return Ok(next);
                        }
                        acc = next;
                    }
                    // Past the cap the conjunct is dropped: a weaker condition is still sound.
                }
                Ok(acc)
            }
        }
    }
}

/// `Some(equal)` for integer-like constants, `None` when undecidable here.
fn const_eq(a: &Value, b: &Value) -> Option<bool> {
    let int = |v: &Value| match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bool(b) => Some(i128::from(*b)),
        _ => None,
    };
    if a.is_null() || b.is_null() {
        return Some(false);
    }
    Some(int(a)? == int(b)?)
}

/// The product of two DNFs; `None` if it would exceed `cap`.
fn product(a: &DSet, b: &DSet, cap: usize) -> Option<DSet> {
    let mut out = DSet::new();
    for x in a {
        for y in b {
            if let Some(m) = x.merge(y) {
                out.insert(m);
                if out.len() > cap {
                    return None;
                }
            }
        }
    }
    Some(out)
}

impl Scope {
    /// Evaluates the scope: adds its tables' DNFs to `deps`, returns the target's DNF if any.
    fn eval(&self, ctx: &Ctx<'_>, deps: &mut Dependencies) -> Result<Option<Dnf>, AnalysisError> {
        let ctx = &Ctx { bindings: &self.bindings, ..*ctx };
        let w = ctx.dnf(&self.where_pred)?;
        let groups = self.groups.iter().map(|g| ctx.dnf(g)).collect::<Result<Vec<_>, _>>()?;
        let mut target = None;
        for (bi, b) in self.bindings.iter().enumerate() {
            let Some(table) = &b.table else { continue };
            let dnf = if b.opaque { Dnf::any() } else { self.binding_dnf(bi, b, &w, &groups, ctx) };
            if Some(bi) == self.target {
                target = Some(dnf);
            } else {
                deps.add(table.clone(), dnf, ctx.caps.dnf);
            }
        }
        Ok(target)
    }

    fn in_group(&self, g: usize) -> impl Fn(usize) -> bool + '_ {
        move |b| self.bindings.get(b).is_some_and(|x| x.group == Some(g))
    }

    fn binding_dnf(&self, bi: usize, b: &Binding, w: &DSet, groups: &[DSet], ctx: &Ctx<'_>) -> Dnf {
        let cap = ctx.caps.dnf;
        let mut out: Vec<Conj> = Vec::new();
        for c in w {
            let own_rejecting = b.group.map(|g| c.null_rejecting(&self.in_group(g)));
            let base = match (b.group, own_rejecting) {
                (Some(g), Some(false)) => c.without(&self.in_group(g)),
                _ => c.clone(),
            };
            let mut combos: DSet = std::iter::once(base).collect();
            for (h, hd) in groups.iter().enumerate() {
                if (b.group == Some(h) || c.null_rejecting(&self.in_group(h)))
                    && let Some(next) = product(&combos, hd, ctx.caps.work)
                {
                    combos = next;
                }
            }
            let same = |x: &Key, y: &Key| match (ctx.table(x.0), ctx.table(y.0)) {
                (Some(tx), Some(ty)) => ctx.catalog.same_equality((tx, &x.1), (ty, &y.1)),
                _ => false,
            };
            for conj in combos {
                let Some(p) = conj.propagate(&same) else { continue };
                let Some(clean) = p.clean(bi) else { continue };
                if clean.is_empty() {
                    return Dnf::any();
                }
                out.push(clean);
                if out.len() > cap.saturating_mul(2) {
                    return Dnf::any();
                }
            }
        }
        Dnf::from_conjs(out, cap)
    }
}

fn is_view(catalog: &CatalogSnapshot, table: &str) -> bool {
    catalog.table(table).is_some_and(|t| matches!(t.relation(), Relation::View { .. }))
}

/// Reads through a view depend on the tables its definition reads, at table level
/// (transitively through views of views). A view whose definition is not known makes the read
/// uncacheable (`volatile`).
fn expand_views(reads: Dependencies, catalog: &CatalogSnapshot, cap: usize, volatile: &mut bool) -> Dependencies {
    let mut todo: Vec<String> = reads.tables().filter(|t| is_view(catalog, t)).map(str::to_owned).collect();
    if todo.is_empty() {
        return reads;
    }
    let mut out = reads;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    while let Some(view) = todo.pop() {
        if !seen.insert(view.clone()) {
            continue;
        }
        if seen.len() > 64 {
            *volatile = true;
            break;
        }
        match catalog.table(&view).map(|t| t.relation()) {
            Some(Relation::View { reads: Some(base) }) => {
                for b in base {
                    out.add(b.clone(), Dnf::any(), cap);
                    if is_view(catalog, b) {
                        todo.push(b.clone());
                    }
                }
            }
            Some(Relation::View { reads: None }) => *volatile = true,
            _ => {}
        }
    }
    out
}

impl Template {
    /// Evaluates the template against bind values and the column classes of `catalog`.
    pub(crate) fn eval(&self, params: &[Value], caps: Caps, catalog: &Catalog) -> Result<Analysis, AnalysisError> {
        // The generation is read before the snapshot: a fixed analysis is never newer than the
        // generation it is filed under.
        let generation = catalog.generation();
        if let Some(max) = self.max_param {
            if max >= params.len() {
                return Err(AnalysisError::ParamOutOfRange { index: max, len: params.len() });
            }
        } else if let Ok(fixed) = self.fixed.lock()
            && let Some((g, a)) = fixed.as_ref()
            && *g == generation
        {
            return Ok(a.clone());
        }
        let snapshot = catalog.snapshot();
        let ctx = Ctx { params, caps, catalog: &snapshot, bindings: &[] };
        let mut reads = Dependencies::new();
        let mut filters: BTreeMap<usize, Dnf> = BTreeMap::new();
        for (si, s) in self.scopes.iter().enumerate() {
            if let Some(f) = s.eval(&ctx, &mut reads)? {
                filters.insert(si, f);
            }
        }
        for t in &self.any_tables {
            reads.add(t.clone(), Dnf::any(), caps.dnf);
        }
        let mut volatile = self.volatile;
        let reads = expand_views(reads, &snapshot, caps.dnf, &mut volatile);
        // A user-defined function (also one named in FROM) reads tables the statement does not
        // show.
        if self.functions.iter().map(String::as_str).chain(reads.tables()).any(|f| snapshot.function(f).is_some()) {
            volatile = true;
        }
        let write = match &self.write {
            None => None,
            Some(w) => {
                let filter = w.scope.and_then(|s| filters.remove(&s)).unwrap_or_else(Dnf::any);
                let rows = w
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .zip(w.columns.iter().map(String::as_str).chain(std::iter::repeat("")))
                            .map(|(o, col)| match o {
                                // A cast the column's class does not accept may change the
                                // stored value: the value is unknown.
                                Some(Operand::Cast(_, t)) if !snapshot.cast_preserves(&w.table, col, t) => Ok(None),
                                Some(o) => ctx.value(o).map(Some),
                                None => Ok(None),
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(WriteTarget {
                    table: w.table.clone(),
                    columns: w.columns.clone(),
                    rows,
                    filter,
                    returning: w.returning.clone(),
                    values_known: w.values_known,
                    upsert: w.upsert,
                    upsert_columns: w.upsert_columns.clone(),
                    conflict_columns: w.conflict_columns.clone(),
                    extra_tables: w.extra_tables.clone(),
                    where_sql: w.where_sql.clone(),
                    where_params: w.where_params.clone(),
                    target_sql: w.target_sql.clone(),
                    preimage_sql: w.preimage_sql.clone(),
                })
            }
        };
        let analysis = Analysis {
            kind: self.kind,
            reads,
            write,
            locking: self.locking,
            volatile,
            functions: self.functions.clone(),
            schemas: self.schemas.clone(),
            shape: self.shape,
        };
        if self.max_param.is_none()
            && let Ok(mut fixed) = self.fixed.lock()
        {
            *fixed = Some((generation, analysis.clone()));
        }
        Ok(analysis)
    }
}
