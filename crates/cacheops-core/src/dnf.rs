//! Disjunctive normal forms of equality conditions, per table.
//!
//! A [`Dnf`] is an OR of [`Conj`]s; a conj is an AND of `column = value` terms. Two special forms:
//! the empty DNF (`[]`) can never match a row ("no dependency"), and a DNF holding the empty conj
//! (`[{}]`) matches every row of its table ("any change to this table").

use std::collections::BTreeMap;

use crate::value::Value;

/// An AND of `column = value` terms. `Value::Null` stands for `column IS NULL`.
///
/// Each term keeps its value and its canonical rendering (the part of the conj key): built by
/// [`Conj::from_terms`] the rendering is [`Value::render`]; the analysis builds conjs with the
/// column's own canonical form ([`crate::equality`]) through [`Conj::from_rendered`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conj {
    terms: BTreeMap<String, (Value, String)>,
}

impl Conj {
    /// The empty conj: true for every row.
    pub fn any() -> Self {
        Self::default()
    }

    /// Builds a conj from terms. Returns `None` when the terms contradict each other (the same
    /// column equal to two different values), i.e. when the conj can never be true.
    ///
    /// ```
    /// use cacheops_core::{Conj, Value};
    /// assert!(Conj::from_terms([("id", Value::Int(1)), ("id", Value::Int(2))]).is_none());
    /// let c = Conj::from_terms([("id", Value::Int(1)), ("id", Value::Text("1".into()))]).unwrap();
    /// assert_eq!(c.len(), 1);
    /// ```
    pub fn from_terms<K: Into<String>>(terms: impl IntoIterator<Item = (K, Value)>) -> Option<Self> {
        Conj::from_rendered(terms.into_iter().map(|(k, v)| {
            let r = v.render();
            (k, v, r)
        }))
    }

    /// Builds a conj from terms with their canonical renderings (column names as they appear
    /// in keys). `None` when two terms on one column have different renderings.
    pub fn from_rendered<K: Into<String>>(terms: impl IntoIterator<Item = (K, Value, String)>) -> Option<Self> {
        let mut conj = Conj::any();
        for (col, value, rendered) in terms {
            match conj.terms.entry(col.into()) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    if e.get().1 != rendered {
                        return None;
                    }
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((value, rendered));
                }
            }
        }
        Some(conj)
    }

    /// Adds a term (rendered with [`Value::render`]). Returns `false` (and leaves the conj
    /// unusable) when it contradicts an existing one.
    pub fn and(&mut self, column: String, value: Value) -> bool {
        let rendered = value.render();
        match self.terms.get(&column) {
            Some((_, existing)) => *existing == rendered,
            None => {
                self.terms.insert(column, (value, rendered));
                true
            }
        }
    }

    /// Whether this conj has no terms (matches every row).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Terms in column order.
    pub fn terms(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.terms.iter().map(|(k, (v, _))| (k.as_str(), v))
    }

    /// The value this conj requires of `column`, if any.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.terms.get(column).map(|(v, _)| v)
    }

    /// The scheme: the sorted column names joined by `,` (`""` for the empty conj).
    pub fn scheme(&self) -> String {
        self.terms.keys().map(String::as_str).collect::<Vec<_>>().join(",")
    }

    /// The rendered body of the conj key: `col=value&col=value`, columns sorted.
    pub fn rendered(&self) -> String {
        let mut out = String::new();
        for (i, (col, (_, rendered))) in self.terms.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(col);
            out.push('=');
            out.push_str(rendered);
        }
        out
    }

    /// Whether a row (column → value) satisfies this conj, comparing [`Value::render`]
    /// renderings. A column missing from the row counts as "might match".
    pub fn matches(&self, row: &BTreeMap<String, Value>) -> bool {
        self.terms.iter().all(|(col, (_, r))| row.get(col).is_none_or(|rv| rv.render() == *r))
    }
}

/// An OR of conjs, normalised: no duplicates, and `[{}]` when any conj is empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dnf {
    conjs: Vec<Conj>,
}

impl Dnf {
    /// The DNF that never matches (`[]`).
    pub fn never() -> Self {
        Dnf { conjs: Vec::new() }
    }

    /// The DNF that matches every row (`[{}]`): a table-level dependency.
    pub fn any() -> Self {
        Dnf { conjs: vec![Conj::any()] }
    }

    /// Builds a normalised DNF. When it has more than `cap` conjs it collapses to [`Dnf::any`].
    pub fn from_conjs(conjs: impl IntoIterator<Item = Conj>, cap: usize) -> Self {
        let mut out: Vec<Conj> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for conj in conjs {
            if conj.is_empty() {
                return Dnf::any();
            }
            let key = conj.rendered();
            if !keys.contains(&key) {
                keys.push(key);
                out.push(conj);
            }
            if out.len() > cap {
                return Dnf::any();
            }
        }
        Dnf { conjs: out }
    }

    /// Whether this DNF never matches.
    pub fn is_never(&self) -> bool {
        self.conjs.is_empty()
    }

    /// Whether this DNF matches every row of the table.
    pub fn is_any(&self) -> bool {
        self.conjs.len() == 1 && self.conjs[0].is_empty()
    }

    /// The conjs.
    pub fn conjs(&self) -> &[Conj] {
        &self.conjs
    }

    /// The union of two DNFs, capped.
    pub fn or(&self, other: &Dnf, cap: usize) -> Dnf {
        Dnf::from_conjs(self.conjs.iter().chain(other.conjs.iter()).cloned(), cap)
    }
}

/// What a read depends on: per table, a DNF. A table whose DNF can never match
/// ([`Dnf::is_never`]) depends only on its table stamp.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dependencies {
    tables: BTreeMap<String, Dnf>,
}

impl Dependencies {
    /// No dependencies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (ORs in) a table's DNF. A never-matching DNF (`WHERE 1 = 2`, `id IN ()`) keeps the
    /// table as a dependency without conditions: no row change can affect the read, but the
    /// table's own stamp (`invalidate_model`, table-level writes) still does.
    pub fn add(&mut self, table: impl Into<String>, dnf: Dnf, cap: usize) {
        let table = table.into();
        if dnf.is_never() {
            self.tables.entry(table).or_insert_with(Dnf::never);
            return;
        }
        let merged = match self.tables.get(&table) {
            Some(existing) => existing.or(&dnf, cap),
            None => dnf,
        };
        self.tables.insert(table, merged);
    }

    /// Merges another set of dependencies into this one.
    pub fn extend(&mut self, other: &Dependencies, cap: usize) {
        for (table, dnf) in &other.tables {
            self.add(table.clone(), dnf.clone(), cap);
        }
    }

    /// The DNF of one table.
    pub fn get(&self, table: &str) -> Option<&Dnf> {
        self.tables.get(table)
    }

    /// Tables and their DNFs, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Dnf)> {
        self.tables.iter().map(|(t, d)| (t.as_str(), d))
    }

    /// Table names.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// Whether there is no dependency at all.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Number of tables.
    pub fn len(&self) -> usize {
        self.tables.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_conj_eats_the_rest() {
        let c1 = Conj::from_terms([("id", Value::Int(1))]).unwrap();
        let d = Dnf::from_conjs([c1.clone(), Conj::any()], 10);
        assert!(d.is_any());
        assert_eq!(Dnf::from_conjs([c1.clone(), c1], 10).conjs().len(), 1);
    }

    #[test]
    fn cap_collapses_to_table_level() {
        let conjs = (0..5).map(|i| Conj::from_terms([("id", Value::Int(i))]).unwrap());
        assert!(Dnf::from_conjs(conjs.clone(), 4).is_any());
        assert_eq!(Dnf::from_conjs(conjs, 5).conjs().len(), 5);
    }

    #[test]
    fn rendered_and_scheme_are_sorted() {
        let c = Conj::from_terms([("b", Value::Int(2)), ("a", Value::Null)]).unwrap();
        assert_eq!(c.scheme(), "a,b");
        assert_eq!(c.rendered(), format!("a={}&b=2", crate::value::NULL_RENDERING));
    }
}
