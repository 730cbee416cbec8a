//! The exhaustive explorer: breadth-first over every interleaving, with a visited-state set, so a
//! counterexample is a shortest one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::model::{Action, Config, Event, Query, ReadReply, State};

/// A small, fast, non-cryptographic hasher (FxHash) — states are plain bytes.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        for b in chunks.remainder() {
            self.add(*b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViolationKind {
    /// A reader's read-check returned data older than the current committed result.
    StaleHit(Query),
    /// A state holds a value that a read-check would serve although it is not current (no
    /// reader happened to read it in this trace).
    StaleServable(Query),
}

/// A counterexample.
#[derive(Debug, Clone)]
pub struct Violation {
    /// What was violated.
    pub kind: ViolationKind,
    /// Number of steps from the initial state.
    pub steps: usize,
    /// The steps from the initial state, one line each, with the state after each step.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "violation: {:?}", self.kind)?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Which properties stop the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Only an actual stale hit by a reader (DESIGN's definition).
    StaleHit,
    /// A stale hit, or a stale value that a read-check would serve in some reached state.
    StaleHitOrServable,
}

/// The result of an exploration.
#[derive(Debug, Clone)]
pub struct Report {
    /// Distinct states reached (all of them when no violation was found).
    pub states: usize,
    /// Transitions explored.
    pub transitions: u64,
    /// Read-checks that hit (a sanity check: the cache does serve hits).
    pub hits: u64,
    /// Stores accepted.
    pub stores: u64,
    /// States with no enabled action (all actors done).
    pub terminal: u64,
    /// The first (shortest) counterexample, if any.
    pub violation: Option<Violation>,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} states, {} transitions, {} hit transitions, {} store transitions, {} terminal states, {:.2?}: {}",
            self.states,
            self.transitions,
            self.hits,
            self.stores,
            self.terminal,
            self.elapsed,
            match &self.violation {
                None => "no violation".to_owned(),
                Some(v) => format!("{:?} after {} steps", v.kind, v.steps),
            }
        )
    }
}

/// Explores every interleaving of `cfg` breadth-first; stops at the first violation.
pub fn explore(cfg: &Config, check: Check) -> Report {
    let start = Instant::now();
    let init = State::initial(cfg);
    // state → index; per index: (parent index, action that led here).
    let mut index: HashMap<State, u32, FxBuild> = HashMap::default();
    let mut parents: Vec<(u32, Action)> = Vec::new();
    let mut queue: VecDeque<(State, u32)> = VecDeque::new();
    index.insert(init, 0);
    parents.push((u32::MAX, Action::Expire(0)));
    queue.push_back((init, 0));
    let mut report =
        Report { states: 0, transitions: 0, hits: 0, stores: 0, terminal: 0, violation: None, elapsed: Duration::ZERO };
    let mut actions = Vec::with_capacity(16);
    if check == Check::StaleHitOrServable
        && let Some(q) = init.servable_stale(cfg)
    {
        report.violation = Some(trace(cfg, &parents, 0, None, ViolationKind::StaleServable(q)));
    }
    'search: while let Some((state, idx)) = queue.pop_front() {
        if report.violation.is_some() {
            break;
        }
        state.actions(cfg, &mut actions);
        if actions.is_empty() {
            report.terminal += 1;
        }
        for &action in &actions {
            report.transitions += 1;
            let (next, ev) = state.step(cfg, action);
            match ev {
                Event::Read { reply: ReadReply::Hit(_), fresh } => {
                    report.hits += 1;
                    if !fresh {
                        let q = hit_query(&state, cfg, action);
                        report.violation = Some(trace(cfg, &parents, idx, Some(action), ViolationKind::StaleHit(q)));
                        break 'search;
                    }
                }
                Event::Stored(true) => report.stores += 1,
                _ => {}
            }
            if let Entry::Vacant(e) = index.entry(next) {
                let n = parents.len() as u32;
                e.insert(n);
                parents.push((idx, action));
                if check == Check::StaleHitOrServable
                    && let Some(q) = next.servable_stale(cfg)
                {
                    report.violation = Some(trace(cfg, &parents, n, None, ViolationKind::StaleServable(q)));
                    break 'search;
                }
                queue.push_back((next, n));
            }
        }
    }
    report.states = index.len();
    report.elapsed = start.elapsed();
    report
}

fn hit_query(state: &State, cfg: &Config, action: Action) -> Query {
    // Replaying the read-check is the simplest way to name the query.
    let line = state.describe_step(cfg, action, Event::None);
    cfg.queries().iter().copied().find(|q| line.contains(&format!("({q})"))).unwrap_or(Query::All)
}

/// Rebuilds the path to state `idx` (plus `last`), replays it and renders it.
fn trace(cfg: &Config, parents: &[(u32, Action)], idx: u32, last: Option<Action>, kind: ViolationKind) -> Violation {
    let mut path = Vec::new();
    let mut i = idx;
    while i != 0 {
        let (p, a) = parents[i as usize];
        path.push(a);
        i = p;
    }
    path.reverse();
    path.extend(last);
    let mut lines = Vec::new();
    let mut s = State::initial(cfg);
    lines.push(format!("     initial: {}", s.describe(cfg)));
    for (n, a) in path.iter().enumerate() {
        let (next, ev) = s.step(cfg, *a);
        lines.push(format!("{:>3}. {}", n + 1, s.describe_step(cfg, *a, ev)));
        lines.push(format!("       => {}", next.describe(cfg)));
        s = next;
    }
    Violation { kind, steps: path.len(), trace: lines }
}
