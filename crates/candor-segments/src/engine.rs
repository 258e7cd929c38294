//! Incremental segment membership, kept in memory beside the ingest path.
//!
//! **Facts.** The engine keeps, per subject, only what some defined rule (segment or
//! offer) needs: field values (purpose-independent: the purpose check already limited
//! which fields a purpose may name), the latest identify traits *per purpose bit*, and
//! per-UTC-day event counts *per purpose bit and event match* ("atom"), pruned to the
//! longest window any rule uses that atom with. An event stored with purposes {P, Q}
//! feeds P's and Q's facts separately, so a withdrawal of P ([`Engine::withdraw`]) drops
//! exactly P's facts and a re-grant starts empty, as the store's purpose floors do.
//!
//! **Membership.** A subject is *known* while the engine keeps at least one fact for it;
//! a segment's members are the known subjects for whom its rule holds over the facts of
//! its purpose. Consent is applied at read time ([`Engine::is_member`], `members`,
//! `count` take what the subject grants *now*), so a withdrawal removes a person at
//! once, before their facts are even dropped. An index from each atom, trait and field to
//! the segments that read it (through `segment "..."` references too) means an event
//! re-evaluates only the segments it can change.
//!
//! **Rebuild.** `Engine::new(today)`, the same `define`s, then `apply_event`/`set_field`
//! of the stored history in order gives exactly the membership the incremental engine
//! has (the model test checks this). `define` cannot know the past of facts it did not
//! keep: it returns [`Defined::needs_replay`] when the new rule needs such facts, and
//! the caller (the server) then rebuilds a fresh engine that way and swaps it in.
//!
//! **Concurrency.** All methods take `&self`. Subjects live in 64 shards, each behind a
//! `parking_lot` mutex (a person's facts are touched by one event at a time and the
//! critical section is short); the definitions sit behind one read-write lock that the
//! event path only reads, and each segment's sorted member set behind its own mutex.
//! Locks are always taken in that order: definitions, shard, member set.

use crate::explain::{display_scalar, display_value, readable_events, verb, Reason};
use crate::rule::{Cmp, Cond, EventMatch, Measure, Rule, RuleError, Scalar, Test};
use candor_core::event::EventKind;
use candor_core::field::{FieldCatalog, FieldName, FieldValue};
use candor_core::idhash::IdMap;
use candor_core::{PurposeSet, SubjectId};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap};

const SHARDS: usize = 64;
/// `segment "..."` references followed at most this deep (the purpose check refuses
/// unknown segments, but a cycle can still be defined; it evaluates to false).
const MAX_REF_DEPTH: usize = 8;

/// What the engine reads of an event; the server implements it over its message type,
/// so this crate knows no wire format.
pub trait EventView {
    fn kind(&self) -> EventKind;
    /// The track event's name, or the page's/screen's name.
    fn name(&self) -> Option<&str>;
    fn property(&self, name: &str) -> Option<Scalar>;
    /// An identify's trait (top-level key).
    fn trait_value(&self, name: &str) -> Option<Scalar>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentDef {
    pub name: String,
    pub purpose_bit: u8,
    pub rule: Rule,
}

/// What a definition changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Defined {
    /// A segment of that name existed and was replaced.
    pub replaced: bool,
    /// The rules now need facts (events, traits, fields, or a longer window of days)
    /// that the engine did not keep before: membership is right only from now on,
    /// unless the caller rebuilds (see the module doc).
    pub needs_replay: bool,
}

/// A rule with its atoms resolved to ids (`None`: not interned, so no facts exist).
#[derive(Clone, Debug)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>, Box<Rule>),
    Field(Option<u32>, FieldName, Test),
    Trait(Option<u32>, String, Test),
    Usage {
        atom: Option<u32>,
        events: EventMatch,
        measure: Measure,
        window: u16,
        cmp: Cmp,
        n: u32,
    },
    Seen {
        atom: Option<u32>,
        events: EventMatch,
        within: u16,
    },
    Segment(String),
}

struct Seg {
    name: String,
    bit: u8,
    rule: Rule,
    node: Node,
    members: Mutex<BTreeSet<SubjectId>>,
    /// Reads a window (directly or through references): re-evaluated at day rollover.
    windowed: bool,
    /// Names of the segments it references, transitively.
    reaches: Vec<String>,
}

/// Who needs one atom, trait or field.
#[derive(Clone, Default, PartialEq, Eq)]
struct Need {
    /// Purposes whose facts are kept (unused for fields: they are purpose-free).
    purposes: PurposeSet,
    /// Any rule at all uses it.
    live: bool,
    /// Longest window in days (atoms only).
    keep: u16,
    /// Segment slots whose membership may change with it.
    segs: Vec<usize>,
}

/// Atom ids by exact event name, and those that match any name.
type ByName = (HashMap<String, Vec<u32>>, Vec<u32>);

#[derive(Default)]
struct Registry {
    today: i64,
    segs: Vec<Option<Seg>>,
    by_name: HashMap<String, usize>,
    offers: Vec<(u8, Node)>,
    atoms: Vec<(EventMatch, Need)>,
    atom_ids: HashMap<EventMatch, u32>,
    /// Live atoms by kind: by exact name, and those matching any name.
    by_event: HashMap<EventKind, ByName>,
    traits: Vec<(String, Need)>,
    trait_ids: HashMap<String, u32>,
    fields: Vec<(FieldName, Need)>,
    field_ids: HashMap<FieldName, u32>,
}

#[derive(Default)]
struct Facts {
    /// By field id.
    fields: Vec<(u32, FieldValue)>,
    /// By (purpose bit, trait id).
    traits: Vec<(u8, u32, Scalar)>,
    /// By (purpose bit, atom id).
    usage: Vec<Usage>,
    /// Segment slots whose rule holds (consent aside), sorted.
    member: Vec<u32>,
}

struct Usage {
    bit: u8,
    atom: u32,
    /// (UTC day, events that day), days ascending.
    days: Vec<(i32, u32)>,
}

impl Facts {
    fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.traits.is_empty() && self.usage.is_empty()
    }

    fn field(&self, id: u32) -> Option<&FieldValue> {
        self.fields
            .binary_search_by_key(&id, |f| f.0)
            .ok()
            .map(|i| &self.fields[i].1)
    }

    fn trait_value(&self, bit: u8, id: u32) -> Option<&Scalar> {
        self.traits
            .binary_search_by_key(&(bit, id), |t| (t.0, t.1))
            .ok()
            .map(|i| &self.traits[i].2)
    }

    fn days(&self, bit: u8, atom: u32) -> &[(i32, u32)] {
        self.usage
            .binary_search_by_key(&(bit, atom), |u| (u.bit, u.atom))
            .map_or(&[], |i| &self.usage[i].days)
    }

    fn bytes(&self) -> usize {
        use std::mem::size_of;
        let mut n = size_of::<Self>()
            + self.fields.capacity() * size_of::<(u32, FieldValue)>()
            + self.traits.capacity() * size_of::<(u8, u32, Scalar)>()
            + self.usage.capacity() * size_of::<Usage>()
            + self.member.capacity() * 4;
        for (_, v) in &self.fields {
            n += match v {
                FieldValue::Text(s) | FieldValue::One(s) => s.capacity(),
                FieldValue::Many(v) => v.iter().map(|s| s.capacity() + 24).sum(),
                _ => 0,
            };
        }
        for (_, _, s) in &self.traits {
            if let Scalar::Text(t) = s {
                n += t.capacity();
            }
        }
        for u in &self.usage {
            n += u.days.capacity() * size_of::<(i32, u32)>();
        }
        n
    }
}

/// Inserts keeping capacity exact: these vectors are small and long-lived, one set per
/// subject, so the default doubling (at least 4 slots) would dominate memory.
fn insert_tight<T>(v: &mut Vec<T>, i: usize, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact(1);
    }
    v.insert(i, x);
}

/// The UTC days `[today - window + 1, today]`.
fn in_window(day: i32, today: i64, window: u16) -> bool {
    let d = i64::from(day);
    d <= today && d > today - i64::from(window)
}

fn scalar_matches(have: &Scalar, want: &Scalar) -> bool {
    have == want
}

/// Evaluates a test on a trait value (same-typed comparisons only).
fn trait_test(v: &Scalar, test: &Test) -> bool {
    let cmp = |c: Cmp, want: &Scalar| match (v, want) {
        (Scalar::Number(a), Scalar::Number(b)) => c.holds(a, b),
        (Scalar::Text(a), Scalar::Text(b)) => c.holds(a, b),
        (Scalar::Bool(a), Scalar::Bool(b)) => c.holds(a, b),
        _ => false,
    };
    match test {
        Test::Cmp(c, want) => cmp(*c, want),
        Test::In(vals) => vals.iter().any(|w| cmp(Cmp::Eq, w)),
        Test::Has(_) => false,
        Test::Exists => true,
    }
}

/// Evaluates a test on a field value. A number compares with an integer or month; text
/// with text or one-of values (a number in the rule as its decimal text, as
/// `FieldSpec::parse_value` reads it).
fn field_test(v: &FieldValue, test: &Test) -> bool {
    let cmp = |c: Cmp, want: &Scalar| match v {
        FieldValue::Integer(n) => num(want).is_some_and(|w| c.holds(*n, w)),
        FieldValue::Month(m) => num(want).is_some_and(|w| c.holds(i64::from(*m), w)),
        FieldValue::Text(s) | FieldValue::One(s) => match want {
            Scalar::Text(w) => !c.is_order() && c.holds(s.as_str(), w.as_str()),
            Scalar::Number(w) => !c.is_order() && c.holds(s.as_str(), w.to_string().as_str()),
            Scalar::Bool(_) => false,
        },
        FieldValue::Many(_) => false,
    };
    match test {
        Test::Cmp(c, want) => cmp(*c, want),
        Test::In(vals) => vals.iter().any(|w| cmp(Cmp::Eq, w)),
        Test::Has(item) => matches!(v, FieldValue::Many(items) if items.contains(item)),
        Test::Exists => true,
    }
}

fn num(s: &Scalar) -> Option<i64> {
    match s {
        Scalar::Number(n) => Some(*n),
        Scalar::Text(t) => t.parse().ok(),
        Scalar::Bool(_) => None,
    }
}

impl Registry {
    fn intern_atom(&mut self, m: &EventMatch) -> u32 {
        if let Some(id) = self.atom_ids.get(m) {
            return *id;
        }
        let id = self.atoms.len() as u32;
        self.atoms.push((m.clone(), Need::default()));
        self.atom_ids.insert(m.clone(), id);
        id
    }

    /// Compiles a rule, interning every atom, trait and field it names.
    fn compile(&mut self, rule: &Rule) -> Node {
        self.intern(rule);
        compile_ro(self, rule)
    }

    fn intern(&mut self, rule: &Rule) {
        match rule {
            Rule::All(v) | Rule::Any(v) => v.iter().for_each(|r| self.intern(r)),
            Rule::Not(r) => self.intern(r),
            Rule::Cond(Cond::Field { field, .. }) => {
                if !self.field_ids.contains_key(field) {
                    self.field_ids
                        .insert(field.clone(), self.fields.len() as u32);
                    self.fields.push((field.clone(), Need::default()));
                }
            }
            Rule::Cond(Cond::Trait { name, .. }) => {
                if !self.trait_ids.contains_key(name) {
                    self.trait_ids
                        .insert(name.clone(), self.traits.len() as u32);
                    self.traits.push((name.clone(), Need::default()));
                }
            }
            Rule::Cond(Cond::Usage { events, .. } | Cond::Seen { events, .. }) => {
                self.intern_atom(events);
            }
            Rule::Cond(Cond::Segment(_)) => {}
        }
    }

    /// Recomputes every need and index from the definitions (rare: define, remove).
    fn rebuild(&mut self) {
        for (_, n) in self.atoms.iter_mut() {
            *n = Need::default();
        }
        for (_, n) in self.traits.iter_mut() {
            *n = Need::default();
        }
        for (_, n) in self.fields.iter_mut() {
            *n = Need::default();
        }
        let mut needs = Needs::default();
        for slot in 0..self.segs.len() {
            let Some(seg) = &self.segs[slot] else {
                continue;
            };
            let mut visited = vec![seg.name.clone()];
            let mut windowed = false;
            self.walk(
                &seg.node,
                seg.bit,
                slot,
                0,
                &mut visited,
                &mut windowed,
                &mut needs,
            );
            if let Some(seg) = self.segs[slot].as_mut() {
                seg.windowed = windowed;
                visited.remove(0);
                seg.reaches = visited;
            }
        }
        for (bit, node) in &self.offers {
            let mut windowed = false;
            let mut visited = Vec::new();
            self.walk(
                node,
                *bit,
                usize::MAX,
                0,
                &mut visited,
                &mut windowed,
                &mut needs,
            );
        }
        needs.apply(self);
        self.by_event.clear();
        for (id, (m, need)) in self.atoms.iter().enumerate() {
            if !need.live {
                continue;
            }
            let entry = self.by_event.entry(m.kind).or_default();
            match &m.name {
                Some(n) => entry.0.entry(n.clone()).or_default().push(id as u32),
                None => entry.1.push(id as u32),
            }
        }
    }

    /// Collects what `node` (evaluated for purpose `bit`) needs, on behalf of segment
    /// `slot` (`usize::MAX`: an offer, which keeps facts but has no members).
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        node: &Node,
        bit: u8,
        slot: usize,
        depth: usize,
        visited: &mut Vec<String>,
        windowed: &mut bool,
        needs: &mut Needs,
    ) {
        match node {
            Node::All(v) | Node::Any(v) => {
                for n in v {
                    self.walk(n, bit, slot, depth, visited, windowed, needs);
                }
            }
            Node::Not(n, _) => self.walk(n, bit, slot, depth, visited, windowed, needs),
            Node::Field(Some(id), ..) => needs.fields.push((*id, bit, 0, slot)),
            Node::Trait(Some(id), ..) => needs.traits.push((*id, bit, 0, slot)),
            Node::Usage {
                atom: Some(id),
                window,
                ..
            } => {
                *windowed = true;
                needs.atoms.push((*id, bit, *window, slot));
            }
            Node::Seen {
                atom: Some(id),
                within,
                ..
            } => {
                *windowed = true;
                needs.atoms.push((*id, bit, *within, slot));
            }
            Node::Segment(name) => {
                if depth >= MAX_REF_DEPTH || visited.contains(name) {
                    return;
                }
                visited.push(name.clone());
                if let Some(seg) = self.by_name.get(name).and_then(|s| self.segs[*s].as_ref()) {
                    self.walk(
                        &seg.node,
                        seg.bit,
                        slot,
                        depth + 1,
                        visited,
                        windowed,
                        needs,
                    );
                }
            }
            Node::Field(None, ..)
            | Node::Trait(None, ..)
            | Node::Usage { atom: None, .. }
            | Node::Seen { atom: None, .. } => {}
        }
    }

    fn seg_by_name(&self, name: &str) -> Option<(usize, &Seg)> {
        let slot = *self.by_name.get(name)?;
        self.segs.get(slot)?.as_ref().map(|s| (slot, s))
    }

    /// Evaluates `node` for purpose `bit` over `facts`, pushing the reasons it held
    /// into `why` when asked.
    fn eval(
        &self,
        node: &Node,
        bit: u8,
        facts: &Facts,
        depth: usize,
        fields: Option<&FieldCatalog>,
        why: &mut Option<&mut Vec<Reason>>,
    ) -> bool {
        match node {
            Node::All(v) => v
                .iter()
                .all(|n| self.eval(n, bit, facts, depth, fields, why)),
            Node::Any(v) => {
                for n in v {
                    // Only the first child that holds explains: try quietly first.
                    if self.eval(n, bit, facts, depth, fields, &mut None) {
                        if why.is_some() {
                            self.eval(n, bit, facts, depth, fields, why);
                        }
                        return true;
                    }
                }
                false
            }
            Node::Not(n, rule) => {
                if self.eval(n, bit, facts, depth, fields, &mut None) {
                    return false;
                }
                if let Some(out) = why {
                    out.push(match (&**n, &**rule) {
                        (Node::Seen { events, within, .. }, _) => Reason::NotSeen {
                            verb: verb(events),
                            events: readable_events(events),
                            within_days: *within,
                        },
                        (_, r) => Reason::Negated {
                            rule: r.to_string(),
                        },
                    });
                }
                true
            }
            Node::Field(id, name, test) => {
                let Some(v) = id.and_then(|id| facts.field(id)) else {
                    return false;
                };
                let ok = field_test(v, test);
                if let (true, Some(out)) = (ok, why) {
                    let label = fields
                        .and_then(|c| c.get(name.as_str()))
                        .map_or_else(|| name.as_str().replace('_', " "), |s| s.label.clone());
                    out.push(match test {
                        Test::Has(item) => Reason::FieldHas {
                            field: name.clone(),
                            label,
                            item: item.clone(),
                        },
                        _ => Reason::Field {
                            field: name.clone(),
                            label,
                            value: display_value(v),
                        },
                    });
                }
                ok
            }
            Node::Trait(id, name, test) => {
                let Some(v) = id.and_then(|id| facts.trait_value(bit, id)) else {
                    return false;
                };
                let ok = trait_test(v, test);
                if let (true, Some(out)) = (ok, why) {
                    out.push(Reason::Trait {
                        name: name.clone(),
                        value: display_scalar(v),
                    });
                }
                ok
            }
            Node::Usage {
                atom,
                events,
                measure,
                window,
                cmp,
                n,
            } => {
                let days = atom.map_or(&[][..], |a| facts.days(bit, a));
                let inside = days
                    .iter()
                    .filter(|(d, _)| in_window(*d, self.today, *window));
                let actual: u64 = match measure {
                    Measure::Count => inside.map(|(_, c)| u64::from(*c)).sum(),
                    Measure::Days => inside.filter(|(_, c)| *c > 0).count() as u64,
                };
                let ok = cmp.holds(actual, u64::from(*n));
                if let (true, Some(out)) = (ok, why) {
                    out.push(Reason::Usage {
                        verb: verb(events),
                        events: readable_events(events),
                        measure: *measure,
                        n_actual: u32::try_from(actual).unwrap_or(u32::MAX),
                        window_days: *window,
                    });
                }
                ok
            }
            Node::Seen {
                atom,
                events,
                within,
            } => {
                let days = atom.map_or(&[][..], |a| facts.days(bit, a));
                let latest = days
                    .iter()
                    .rev()
                    .find(|(d, c)| *c > 0 && in_window(*d, self.today, *within));
                if let (Some((d, _)), Some(out)) = (latest, why) {
                    out.push(Reason::Seen {
                        verb: verb(events),
                        events: readable_events(events),
                        days_ago: u32::try_from(self.today - i64::from(*d)).unwrap_or(0),
                    });
                }
                latest.is_some()
            }
            Node::Segment(name) => {
                if depth >= MAX_REF_DEPTH {
                    return false;
                }
                match self.seg_by_name(name) {
                    Some((_, seg)) => self.eval(&seg.node, seg.bit, facts, depth + 1, fields, why),
                    None => false,
                }
            }
        }
    }

    /// Re-evaluates segment `slot` for one subject and updates both membership records.
    fn update(&self, slot: usize, subject: &SubjectId, facts: &mut Facts) {
        let Some(seg) = self.segs.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let now = !facts.is_empty() && self.eval(&seg.node, seg.bit, facts, 0, None, &mut None);
        let key = slot as u32;
        match (facts.member.binary_search(&key), now) {
            (Err(i), true) => {
                insert_tight(&mut facts.member, i, key);
                seg.members.lock().insert(*subject);
            }
            (Ok(i), false) => {
                facts.member.remove(i);
                seg.members.lock().remove(subject);
            }
            _ => {}
        }
    }

    /// Drops a subject from every member set (it has no facts left, or is forgotten).
    fn drop_memberships(&self, subject: &SubjectId, facts: &Facts) {
        for slot in &facts.member {
            if let Some(seg) = self.segs.get(*slot as usize).and_then(Option::as_ref) {
                seg.members.lock().remove(subject);
            }
        }
    }

    /// Removes facts no rule needs any more, and days past every window.
    fn prune(&self, facts: &mut Facts) {
        facts
            .fields
            .retain(|(id, _)| self.fields.get(*id as usize).is_some_and(|(_, n)| n.live));
        facts.traits.retain(|(bit, id, _)| {
            self.traits
                .get(*id as usize)
                .is_some_and(|(_, n)| n.purposes.contains(*bit))
        });
        let today = self.today;
        facts.usage.retain_mut(|u| {
            let Some((_, need)) = self.atoms.get(u.atom as usize) else {
                return false;
            };
            if !need.purposes.contains(u.bit) {
                return false;
            }
            let keep = need.keep;
            u.days
                .retain(|(d, _)| i64::from(*d) > today - i64::from(keep));
            !u.days.is_empty()
        });
    }
}

/// Needs collected by a walk: (id, purpose bit, window, segment slot).
#[derive(Default)]
struct Needs {
    atoms: Vec<(u32, u8, u16, usize)>,
    traits: Vec<(u32, u8, u16, usize)>,
    fields: Vec<(u32, u8, u16, usize)>,
}

impl Needs {
    fn apply(self, reg: &mut Registry) {
        fn put(need: &mut Need, bit: u8, window: u16, slot: usize) {
            need.live = true;
            need.purposes.insert(bit);
            need.keep = need.keep.max(window);
            if slot != usize::MAX && !need.segs.contains(&slot) {
                need.segs.push(slot);
            }
        }
        for (id, bit, w, slot) in self.atoms {
            if let Some(a) = reg.atoms.get_mut(id as usize) {
                put(&mut a.1, bit, w, slot);
            }
        }
        for (id, bit, w, slot) in self.traits {
            if let Some(t) = reg.traits.get_mut(id as usize) {
                put(&mut t.1, bit, w, slot);
            }
        }
        for (id, bit, w, slot) in self.fields {
            if let Some(f) = reg.fields.get_mut(id as usize) {
                put(&mut f.1, bit, w, slot);
            }
        }
    }
}

/// A snapshot of the needs, to tell whether a definition needs facts not kept before.
fn snapshot(reg: &Registry) -> Vec<(u8, u32, PurposeSet, bool, u16)> {
    let mut out = Vec::new();
    for (i, (_, n)) in reg.atoms.iter().enumerate() {
        out.push((0, i as u32, n.purposes, n.live, n.keep));
    }
    for (i, (_, n)) in reg.traits.iter().enumerate() {
        out.push((1, i as u32, n.purposes, n.live, n.keep));
    }
    // Field values are kept for every purpose alike: only whether one is kept counts.
    for (i, (_, n)) in reg.fields.iter().enumerate() {
        out.push((2, i as u32, PurposeSet::EMPTY, n.live, 0));
    }
    out
}

fn needs_more(before: &[(u8, u32, PurposeSet, bool, u16)], reg: &Registry) -> bool {
    let after = snapshot(reg);
    after.iter().any(|a| {
        let b = before
            .iter()
            .find(|b| b.0 == a.0 && b.1 == a.1)
            .copied()
            .unwrap_or((a.0, a.1, PurposeSet::EMPTY, false, 0));
        (a.3 && !b.3) || !a.2.minus(b.2).is_empty() || a.4 > b.4
    })
}

pub struct Engine {
    reg: RwLock<Registry>,
    shards: Box<[Mutex<IdMap<SubjectId, Facts>>]>,
}

fn shard_of(subject: &SubjectId) -> usize {
    subject.as_bytes()[0] as usize % SHARDS
}

impl Engine {
    /// An empty engine; `today` is the current UTC day number.
    pub fn new(today: i64) -> Self {
        Self {
            reg: RwLock::new(Registry {
                today,
                ..Registry::default()
            }),
            shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
        }
    }

    /// Adds a segment, or replaces the one of the same name, and re-evaluates every
    /// known subject for it and for the segments that reference it. The rule is
    /// validated (a rule built in code may break the limits); the purpose check is the
    /// caller's ([`crate::check`]).
    pub fn define(&self, def: SegmentDef) -> Result<Defined, RuleError> {
        def.rule.validate()?;
        let mut reg = self.reg.write();
        let before = snapshot(&reg);
        let node = reg.compile(&def.rule);
        let seg = Seg {
            name: def.name.clone(),
            bit: def.purpose_bit,
            rule: def.rule,
            node,
            members: Mutex::new(BTreeSet::new()),
            windowed: false,
            reaches: Vec::new(),
        };
        let replaced = reg.by_name.get(&def.name).copied();
        let slot = match replaced {
            Some(slot) => {
                // Memberships recorded under the old definition go with it.
                self.clear_slot(&reg, slot);
                reg.segs[slot] = Some(seg);
                slot
            }
            None => {
                let slot = match reg.segs.iter().position(Option::is_none) {
                    Some(free) => {
                        reg.segs[free] = Some(seg);
                        free
                    }
                    None => {
                        reg.segs.push(Some(seg));
                        reg.segs.len() - 1
                    }
                };
                reg.by_name.insert(def.name.clone(), slot);
                slot
            }
        };
        reg.rebuild();
        let needs_replay = needs_more(&before, &reg);
        debug_assert!(reg.segs[slot].is_some());
        self.refresh(&reg, &def.name);
        Ok(Defined {
            replaced: replaced.is_some(),
            needs_replay,
        })
    }

    /// Removes a segment (segments that reference it then never hold through it).
    pub fn remove(&self, name: &str) {
        let mut reg = self.reg.write();
        let Some(slot) = reg.by_name.remove(name) else {
            return;
        };
        self.clear_slot(&reg, slot);
        reg.segs[slot] = None;
        reg.rebuild();
        self.refresh(&reg, name);
    }

    /// Sets the offer rules of one purpose (replacing any before), so the engine keeps
    /// the facts they need; offers have no member sets, they are evaluated on demand by
    /// [`Engine::explain`]. Returns whether replay is needed, as [`Engine::define`].
    pub fn define_offers(&self, purpose_bit: u8, rules: &[Rule]) -> Result<Defined, RuleError> {
        for r in rules {
            r.validate()?;
        }
        let mut reg = self.reg.write();
        let before = snapshot(&reg);
        let replaced = reg.offers.iter().any(|(b, _)| *b == purpose_bit);
        reg.offers.retain(|(b, _)| *b != purpose_bit);
        for r in rules {
            let node = reg.compile(r);
            reg.offers.push((purpose_bit, node));
        }
        reg.rebuild();
        let needs_replay = needs_more(&before, &reg);
        self.refresh(&reg, "");
        Ok(Defined {
            replaced,
            needs_replay,
        })
    }

    fn clear_slot(&self, reg: &Registry, slot: usize) {
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            for facts in map.values_mut() {
                if let Ok(i) = facts.member.binary_search(&(slot as u32)) {
                    facts.member.remove(i);
                }
            }
        }
        if let Some(seg) = reg.segs.get(slot).and_then(Option::as_ref) {
            seg.members.lock().clear();
        }
    }

    /// After a definition changed: drops facts no rule needs (and subjects left with
    /// none), then re-evaluates the segment `name` and everything referencing it.
    fn refresh(&self, reg: &Registry, name: &str) {
        let slots: Vec<usize> = reg
            .segs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| s.name == name || s.reaches.iter().any(|r| r == name))
            .map(|(i, _)| i)
            .collect();
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            map.retain(|subject, facts| {
                reg.prune(facts);
                if facts.is_empty() {
                    reg.drop_memberships(subject, facts);
                    return false;
                }
                for slot in &slots {
                    reg.update(*slot, subject, facts);
                }
                true
            });
        }
    }

    /// Whether an event of this kind and name, stored for `purposes`, could change any
    /// fact the engine keeps: lets the ingest path skip building an [`EventView`].
    pub fn wants_event(&self, purposes: PurposeSet, kind: EventKind, name: Option<&str>) -> bool {
        let reg = self.reg.read();
        if kind == EventKind::Identify {
            return reg
                .traits
                .iter()
                .any(|(_, n)| !n.purposes.intersect(purposes).is_empty());
        }
        let Some((exact, any)) = reg.by_event.get(&kind) else {
            return false;
        };
        name.and_then(|n| exact.get(n))
            .into_iter()
            .flatten()
            .chain(any)
            .any(|a| {
                reg.atoms
                    .get(*a as usize)
                    .is_some_and(|(_, n)| !n.purposes.intersect(purposes).is_empty())
            })
    }

    /// Whether identify traits stored for `purposes` are kept at all.
    pub fn wants_traits(&self, purposes: PurposeSet) -> bool {
        self.wants_event(purposes, EventKind::Identify, None)
    }

    /// Feeds one stored event: `purposes` are those it was stored under (after the
    /// gate), `day` its UTC day (the caller clamps future days to today; events older
    /// than the longest window of a match are ignored for it).
    pub fn apply_event(
        &self,
        subject: SubjectId,
        purposes: PurposeSet,
        day: i64,
        ev: &dyn EventView,
    ) {
        let reg = self.reg.read();
        let kind = ev.kind();
        let mut touched: Vec<usize> = Vec::new();
        let mut shard = self.shards[shard_of(&subject)].lock();
        if kind == EventKind::Identify {
            let mut changes: Vec<(u8, u32, Scalar)> = Vec::new();
            for (id, (name, need)) in reg.traits.iter().enumerate() {
                let bits = need.purposes.intersect(purposes);
                if bits.is_empty() {
                    continue;
                }
                if let Some(v) = ev.trait_value(name) {
                    for bit in bits.iter() {
                        changes.push((bit, id as u32, v.clone()));
                    }
                    touched.extend(&need.segs);
                }
            }
            if changes.is_empty() {
                return;
            }
            if !shard.contains_key(&subject) {
                // Becoming known can change every segment (`not ...` rules).
                touched.extend(0..reg.segs.len());
            }
            let facts = shard.entry(subject).or_default();
            for (bit, id, v) in changes {
                match facts
                    .traits
                    .binary_search_by_key(&(bit, id), |t| (t.0, t.1))
                {
                    Ok(i) => facts.traits[i].2 = v,
                    Err(i) => insert_tight(&mut facts.traits, i, (bit, id, v)),
                }
            }
        } else {
            let Some((exact, any)) = reg.by_event.get(&kind) else {
                return;
            };
            let Ok(d) = i32::try_from(day) else {
                return;
            };
            let candidates = ev
                .name()
                .and_then(|n| exact.get(n))
                .into_iter()
                .flatten()
                .chain(any);
            let mut hits: Vec<(u32, PurposeSet, u16)> = Vec::new();
            for a in candidates {
                let Some((m, need)) = reg.atoms.get(*a as usize) else {
                    continue;
                };
                let bits = need.purposes.intersect(purposes);
                if bits.is_empty() || i64::from(d) <= reg.today - i64::from(need.keep) {
                    continue;
                }
                if m.props
                    .iter()
                    .all(|(k, v)| ev.property(k).is_some_and(|have| scalar_matches(&have, v)))
                {
                    hits.push((*a, bits, need.keep));
                    touched.extend(&need.segs);
                }
            }
            if hits.is_empty() {
                return;
            }
            if !shard.contains_key(&subject) {
                touched.extend(0..reg.segs.len());
            }
            let facts = shard.entry(subject).or_default();
            for (atom, bits, keep) in hits {
                for bit in bits.iter() {
                    let i = match facts
                        .usage
                        .binary_search_by_key(&(bit, atom), |u| (u.bit, u.atom))
                    {
                        Ok(i) => i,
                        Err(i) => {
                            insert_tight(
                                &mut facts.usage,
                                i,
                                Usage {
                                    bit,
                                    atom,
                                    days: Vec::new(),
                                },
                            );
                            i
                        }
                    };
                    let days = &mut facts.usage[i].days;
                    match days.binary_search_by_key(&d, |x| x.0) {
                        Ok(j) => days[j].1 = days[j].1.saturating_add(1),
                        Err(j) => insert_tight(days, j, (d, 1)),
                    }
                    // Keep it compact while we are here.
                    let today = reg.today;
                    days.retain(|(x, _)| i64::from(*x) > today - i64::from(keep));
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        if let Some(facts) = shard.get_mut(&subject) {
            for slot in touched {
                reg.update(slot, &subject, facts);
            }
        }
    }

    /// Sets (or with `None` removes) a field's value; ignored for fields no rule names.
    pub fn set_field(&self, subject: SubjectId, field: &FieldName, value: Option<FieldValue>) {
        let reg = self.reg.read();
        let Some(id) = reg.field_ids.get(field).copied() else {
            return;
        };
        let Some((_, need)) = reg.fields.get(id as usize).filter(|(_, n)| n.live) else {
            return;
        };
        let mut shard = self.shards[shard_of(&subject)].lock();
        let all: Vec<usize>;
        let mut slots = &need.segs[..];
        match value {
            Some(v) => {
                if !shard.contains_key(&subject) {
                    all = (0..reg.segs.len()).collect();
                    slots = &all;
                }
                let facts = shard.entry(subject).or_default();
                match facts.fields.binary_search_by_key(&id, |f| f.0) {
                    Ok(i) => facts.fields[i].1 = v,
                    Err(i) => insert_tight(&mut facts.fields, i, (id, v)),
                }
            }
            None => {
                let Some(facts) = shard.get_mut(&subject) else {
                    return;
                };
                match facts.fields.binary_search_by_key(&id, |f| f.0) {
                    Ok(i) => {
                        facts.fields.remove(i);
                    }
                    Err(_) => return,
                }
            }
        }
        Self::settle(&reg, &mut shard, subject, slots);
    }

    /// Re-evaluates `slots` for a subject, or drops it if it has no facts left.
    fn settle(
        reg: &Registry,
        shard: &mut IdMap<SubjectId, Facts>,
        subject: SubjectId,
        slots: &[usize],
    ) {
        let Some(facts) = shard.get_mut(&subject) else {
            return;
        };
        if facts.is_empty() {
            reg.drop_memberships(&subject, facts);
            shard.remove(&subject);
            return;
        }
        for slot in slots {
            reg.update(*slot, &subject, facts);
        }
    }

    /// Drops the usage and trait facts kept for `purposes` (a withdrawal): a re-grant
    /// starts empty, as the store's purpose floors make it.
    pub fn withdraw(&self, subject: SubjectId, purposes: PurposeSet) {
        let reg = self.reg.read();
        let mut shard = self.shards[shard_of(&subject)].lock();
        let Some(facts) = shard.get_mut(&subject) else {
            return;
        };
        facts.traits.retain(|t| !purposes.contains(t.0));
        facts.usage.retain(|u| !purposes.contains(u.bit));
        let all: Vec<usize> = (0..reg.segs.len()).collect();
        Self::settle(&reg, &mut shard, subject, &all);
    }

    /// Erasure: everything about the subject goes.
    pub fn forget(&self, subject: SubjectId) {
        let reg = self.reg.read();
        let mut shard = self.shards[shard_of(&subject)].lock();
        if let Some(facts) = shard.remove(&subject) {
            reg.drop_memberships(&subject, &facts);
        }
    }

    /// Day rollover: prunes days past every window and re-evaluates the segments that
    /// read a window. A day earlier than the current one is ignored (time only moves on).
    pub fn advance(&self, today: i64) {
        let mut reg = self.reg.write();
        if today <= reg.today {
            return;
        }
        reg.today = today;
        let slots: Vec<usize> = reg
            .segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.windowed))
            .map(|(i, _)| i)
            .collect();
        for shard in self.shards.iter() {
            let mut map = shard.lock();
            map.retain(|subject, facts| {
                reg.prune(facts);
                if facts.is_empty() {
                    reg.drop_memberships(subject, facts);
                    return false;
                }
                for slot in &slots {
                    reg.update(*slot, subject, facts);
                }
                true
            });
        }
    }

    /// The current UTC day.
    pub fn today(&self) -> i64 {
        self.reg.read().today
    }

    /// Whether the subject is in the segment now: its rule holds and the subject grants
    /// the segment's purpose. `None`: no such segment.
    pub fn is_member(&self, name: &str, subject: &SubjectId, granted: PurposeSet) -> Option<bool> {
        let reg = self.reg.read();
        let (_, seg) = reg.seg_by_name(name)?;
        Some(granted.contains(seg.bit) && seg.members.lock().contains(subject))
    }

    /// A page of members in `SubjectId` byte order, after `after` (exclusive), each
    /// granting the segment's purpose now. `None`: no such segment.
    pub fn members(
        &self,
        name: &str,
        granted: &dyn Fn(&SubjectId) -> PurposeSet,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Option<Vec<SubjectId>> {
        let mut out = Vec::new();
        if limit == 0 {
            return self.reg.read().seg_by_name(name).map(|_| out);
        }
        self.scan(name, after, &mut |s, bit| {
            if granted(s).contains(bit) {
                out.push(*s);
            }
            out.len() < limit
        })?;
        Some(out)
    }

    /// How many members grant the segment's purpose now. `None`: no such segment.
    pub fn count(&self, name: &str, granted: &dyn Fn(&SubjectId) -> PurposeSet) -> Option<u64> {
        let mut n = 0u64;
        self.scan(name, None, &mut |s, bit| {
            if granted(s).contains(bit) {
                n += 1;
            }
            true
        })?;
        Some(n)
    }

    /// Walks a segment's members in order, a chunk at a time: the locks are released
    /// before `visit` runs (it is the caller's consent lookup, which may take its own
    /// locks), and a long count never holds up the ingest path. `visit` returns whether
    /// to go on. A member set changing between chunks is seen as it is then.
    fn scan(
        &self,
        name: &str,
        after: Option<SubjectId>,
        visit: &mut dyn FnMut(&SubjectId, u8) -> bool,
    ) -> Option<()> {
        use std::ops::Bound;
        const CHUNK: usize = 1024;
        let mut cursor = after;
        loop {
            let (bit, chunk): (u8, Vec<SubjectId>) = {
                let reg = self.reg.read();
                let (_, seg) = reg.seg_by_name(name)?;
                let members = seg.members.lock();
                let lower = cursor.map_or(Bound::Unbounded, Bound::Excluded);
                let chunk = members
                    .range((lower, Bound::Unbounded))
                    .take(CHUNK)
                    .copied()
                    .collect();
                (seg.bit, chunk)
            };
            for s in &chunk {
                if !visit(s, bit) {
                    return Some(());
                }
            }
            if chunk.len() < CHUNK {
                return Some(());
            }
            cursor = chunk.last().copied();
        }
    }

    /// The reasons `rule` holds for the subject over the facts kept for `purpose_bit`
    /// (consent aside: the caller checks it), or `None` when it does not hold. A subject
    /// the engine does not know is evaluated over no facts. Facts the engine does not
    /// keep (no defined segment or offer needs them) count as absent.
    pub fn explain(
        &self,
        rule: &Rule,
        purpose_bit: u8,
        subject: &SubjectId,
        fields: &FieldCatalog,
    ) -> Option<Vec<Reason>> {
        if rule.validate().is_err() {
            return None;
        }
        let reg = self.reg.read();
        let node = compile_ro(&reg, rule);
        let shard = self.shards[shard_of(subject)].lock();
        let empty = Facts::default();
        let facts = shard.get(subject).unwrap_or(&empty);
        let mut reasons = Vec::new();
        let ok = reg.eval(
            &node,
            purpose_bit,
            facts,
            0,
            Some(fields),
            &mut Some(&mut reasons),
        );
        ok.then_some(reasons)
    }

    /// Subjects known (with at least one fact kept).
    pub fn subjects(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// An estimate of the memory held for subjects and memberships, in bytes.
    pub fn memory_bytes(&self) -> usize {
        let reg = self.reg.read();
        let per_entry = std::mem::size_of::<(SubjectId, Facts)>() + 1;
        let mut n = 0;
        for shard in self.shards.iter() {
            let map = shard.lock();
            n += map.capacity() * per_entry;
            n += map
                .values()
                .map(|f| f.bytes() - std::mem::size_of::<Facts>())
                .sum::<usize>();
        }
        // A BTreeSet holds up to 11 ids per ~200-byte node; count it as 24 bytes each.
        for seg in reg.segs.iter().flatten() {
            n += seg.members.lock().len() * 24;
        }
        n
    }

    /// The defined segments' names, purposes and rules, sorted by name.
    pub fn definitions(&self) -> Vec<SegmentDef> {
        let reg = self.reg.read();
        let mut out: Vec<SegmentDef> = reg
            .segs
            .iter()
            .flatten()
            .map(|s| SegmentDef {
                name: s.name.clone(),
                purpose_bit: s.bit,
                rule: s.rule.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// Compiles a rule against the interned ids without adding any.
fn compile_ro(reg: &Registry, rule: &Rule) -> Node {
    match rule {
        Rule::All(v) => Node::All(v.iter().map(|r| compile_ro(reg, r)).collect()),
        Rule::Any(v) => Node::Any(v.iter().map(|r| compile_ro(reg, r)).collect()),
        Rule::Not(r) => Node::Not(Box::new(compile_ro(reg, r)), r.clone()),
        Rule::Cond(c) => match c {
            Cond::Field { field, test } => Node::Field(
                reg.field_ids.get(field).copied(),
                field.clone(),
                test.clone(),
            ),
            Cond::Trait { name, test } => {
                Node::Trait(reg.trait_ids.get(name).copied(), name.clone(), test.clone())
            }
            Cond::Usage {
                events,
                measure,
                window_days,
                cmp,
                n,
            } => Node::Usage {
                atom: reg.atom_ids.get(events).copied(),
                events: events.clone(),
                measure: *measure,
                window: *window_days,
                cmp: *cmp,
                n: *n,
            },
            Cond::Seen {
                events,
                within_days,
            } => Node::Seen {
                atom: reg.atom_ids.get(events).copied(),
                events: events.clone(),
                within: *within_days,
            },
            Cond::Segment(s) => Node::Segment(s.clone()),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::text::parse_text;

    /// An event as the tests build it.
    #[derive(Clone, Debug)]
    pub struct Ev {
        pub kind: EventKind,
        pub name: Option<String>,
        pub props: Vec<(String, Scalar)>,
        pub traits: Vec<(String, Scalar)>,
    }

    impl EventView for Ev {
        fn kind(&self) -> EventKind {
            self.kind
        }
        fn name(&self) -> Option<&str> {
            self.name.as_deref()
        }
        fn property(&self, name: &str) -> Option<Scalar> {
            self.props.iter().find(|p| p.0 == name).map(|p| p.1.clone())
        }
        fn trait_value(&self, name: &str) -> Option<Scalar> {
            self.traits
                .iter()
                .find(|p| p.0 == name)
                .map(|p| p.1.clone())
        }
    }

    pub fn track(name: &str, props: &[(&str, Scalar)]) -> Ev {
        Ev {
            kind: EventKind::Track,
            name: Some(name.into()),
            props: props
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
            traits: vec![],
        }
    }

    pub fn identify(traits: &[(&str, Scalar)]) -> Ev {
        Ev {
            kind: EventKind::Identify,
            name: None,
            props: vec![],
            traits: traits
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        }
    }

    fn subject(n: u8) -> SubjectId {
        SubjectId::from_bytes([n; 16])
    }

    fn def(e: &Engine, name: &str, bit: u8, rule: &str) -> Defined {
        e.define(SegmentDef {
            name: name.into(),
            purpose_bit: bit,
            rule: parse_text(rule).unwrap(),
        })
        .unwrap()
    }

    fn all_p() -> PurposeSet {
        PurposeSet::from_bits(u64::MAX)
    }
    const P0: u8 = 0;

    fn p(bits: &[u8]) -> PurposeSet {
        let mut s = PurposeSet::EMPTY;
        for b in bits {
            s.insert(*b);
        }
        s
    }

    fn member(e: &Engine, seg: &str, s: u8) -> bool {
        e.is_member(seg, &subject(s), PurposeSet::from_bits(u64::MAX))
            .unwrap()
    }

    #[test]
    fn windows_are_utc_days_ending_today() {
        let e = Engine::new(100);
        let _ = def(&e, "recent", P0, r#"count(track "A") in last 7 days >= 1"#);
        let a = track("A", &[]);
        e.apply_event(subject(1), p(&[0]), 94, &a); // 6 days ago: inside
        e.apply_event(subject(2), p(&[0]), 93, &a); // 7 days ago: outside, ignored
        assert!(member(&e, "recent", 1));
        assert!(!member(&e, "recent", 2));
        assert_eq!(
            e.subjects(),
            1,
            "an event older than every window keeps nothing"
        );
        e.advance(101);
        assert!(!member(&e, "recent", 1));
        assert_eq!(e.subjects(), 0, "pruned at rollover");
        // A future day counts once it is inside the window.
        e.apply_event(subject(3), p(&[0]), 102, &a);
        assert!(!member(&e, "recent", 3));
        e.advance(102);
        assert!(member(&e, "recent", 3));
    }

    #[test]
    fn distinct_days_versus_count_and_recency() {
        let e = Engine::new(50);
        let _ = def(&e, "busy", P0, r#"count(track "A") in last 30 days >= 4"#);
        let _ = def(&e, "regular", P0, r#"days(track "A") in last 30 days >= 3"#);
        let _ = def(&e, "lately", P0, r#"seen(track "A") within 3 days"#);
        let a = track("A", &[]);
        for day in [40, 40, 40, 45] {
            e.apply_event(subject(1), p(&[0]), day, &a);
        }
        assert!(member(&e, "busy", 1));
        assert!(!member(&e, "regular", 1));
        assert!(!member(&e, "lately", 1));
        e.apply_event(subject(1), p(&[0]), 48, &a);
        assert!(member(&e, "regular", 1) && member(&e, "lately", 1));
        e.advance(51);
        assert!(!member(&e, "lately", 1), "48 is 3 days before 51");
        let why = e
            .explain(
                &parse_text(r#"seen(track "A") within 5 days"#).unwrap(),
                P0,
                &subject(1),
                &FieldCatalog::default(),
            )
            .unwrap();
        assert_eq!(why[0].sentence(), "you last used A 3 days ago");
        let why = e
            .explain(
                &parse_text(r#"days(track "A") in last 30 days >= 3"#).unwrap(),
                P0,
                &subject(1),
                &FieldCatalog::default(),
            )
            .unwrap();
        assert_eq!(
            why[0].sentence(),
            "you used A on 3 days in the last 30 days"
        );
    }

    #[test]
    fn props_and_names_narrow_the_match() {
        let e = Engine::new(10);
        let _ = def(
            &e,
            "fit",
            P0,
            r#"count(track "S" where cat = "fitness") in last 2 days >= 1"#,
        );
        let _ = def(&e, "any", P0, "count(track) in last 2 days >= 2");
        assert!(e.wants_event(p(&[0]), EventKind::Track, Some("S")));
        assert!(
            e.wants_event(p(&[0]), EventKind::Track, Some("other")),
            "any name"
        );
        assert!(!e.wants_event(p(&[1]), EventKind::Track, Some("S")));
        assert!(!e.wants_event(p(&[0]), EventKind::Page, None));
        assert!(!e.wants_traits(p(&[0])));
        e.apply_event(
            subject(1),
            p(&[0]),
            10,
            &track("S", &[("cat", Scalar::Text("food".into()))]),
        );
        assert!(!member(&e, "fit", 1) && !member(&e, "any", 1));
        e.apply_event(
            subject(1),
            p(&[0]),
            9,
            &track("S", &[("cat", Scalar::Text("fitness".into()))]),
        );
        assert!(member(&e, "fit", 1) && member(&e, "any", 1));
    }

    #[test]
    fn fields_negation_in_has_and_numbers() {
        let e = Engine::new(0);
        let _ = def(&e, "young", P0, r#"field.age_band in ["18-24", "25-34"]"#);
        let _ = def(&e, "runner", P0, r#"field.interests has "running""#);
        let _ = def(
            &e,
            "big",
            P0,
            "field.shoe_size >= 42 and field.shoe_size < 46",
        );
        let _ = def(
            &e,
            "not_young",
            P0,
            r#"not field.age_band = "18-24" and field.shoe_size exists"#,
        );
        let f = |n: &str| FieldName::parse(n).unwrap();
        e.set_field(
            subject(1),
            &f("age_band"),
            Some(FieldValue::One("25-34".into())),
        );
        e.set_field(
            subject(1),
            &f("interests"),
            Some(FieldValue::Many(vec!["cycling".into(), "running".into()])),
        );
        e.set_field(subject(1), &f("shoe_size"), Some(FieldValue::Integer(42)));
        e.set_field(subject(1), &f("unused"), Some(FieldValue::Integer(1)));
        assert!(member(&e, "young", 1) && member(&e, "runner", 1));
        assert!(member(&e, "big", 1) && member(&e, "not_young", 1));
        e.set_field(subject(1), &f("shoe_size"), Some(FieldValue::Integer(46)));
        assert!(!member(&e, "big", 1));
        e.set_field(
            subject(1),
            &f("age_band"),
            Some(FieldValue::One("18-24".into())),
        );
        assert!(!member(&e, "not_young", 1) && member(&e, "young", 1));
        e.set_field(subject(1), &f("age_band"), None);
        assert!(!member(&e, "young", 1));
        assert!(
            member(&e, "not_young", 1),
            "an absent field fails the test; not flips it"
        );
        e.set_field(subject(1), &f("shoe_size"), None);
        e.set_field(subject(1), &f("interests"), None);
        assert_eq!(e.subjects(), 0, "no facts left: no longer known");
    }

    #[test]
    fn traits_follow_the_latest_identify_per_purpose() {
        let e = Engine::new(0);
        let _ = def(&e, "gold", P0, r#"trait.plan = "gold""#);
        let _ = def(&e, "gold1", 1, r#"trait.plan = "gold""#);
        assert!(e.wants_traits(p(&[1])));
        e.apply_event(
            subject(1),
            p(&[0, 1]),
            0,
            &identify(&[("plan", Scalar::Text("gold".into()))]),
        );
        assert!(member(&e, "gold", 1) && member(&e, "gold1", 1));
        e.apply_event(
            subject(1),
            p(&[0]),
            0,
            &identify(&[("plan", Scalar::Text("silver".into()))]),
        );
        assert!(!member(&e, "gold", 1) && member(&e, "gold1", 1));
        e.apply_event(
            subject(1),
            p(&[0]),
            0,
            &identify(&[("other", Scalar::Bool(true))]),
        );
        assert!(
            !member(&e, "gold", 1),
            "an identify without the trait keeps it"
        );
    }

    #[test]
    fn withdrawal_drops_facts_and_consent_is_read_at_query_time() {
        let e = Engine::new(5);
        let _ = def(&e, "a0", 0, r#"count(track "A") in last 3 days >= 2"#);
        let _ = def(&e, "a1", 1, r#"count(track "A") in last 3 days >= 2"#);
        let a = track("A", &[]);
        e.apply_event(subject(1), p(&[0, 1]), 5, &a);
        e.apply_event(subject(1), p(&[0, 1]), 5, &a);
        assert!(member(&e, "a0", 1) && member(&e, "a1", 1));
        // Consent at read time.
        assert_eq!(e.is_member("a1", &subject(1), p(&[0])), Some(false));
        assert_eq!(e.count("a1", &|_| p(&[0])), Some(0));
        assert_eq!(e.count("a0", &|_| p(&[0])), Some(1));
        assert_eq!(e.is_member("nope", &subject(1), p(&[0])), None);
        e.withdraw(subject(1), p(&[1]));
        assert!(member(&e, "a0", 1) && !member(&e, "a1", 1));
        // A re-grant starts empty.
        e.apply_event(subject(1), p(&[0, 1]), 5, &a);
        assert!(!member(&e, "a1", 1));
        e.forget(subject(1));
        assert!(!member(&e, "a0", 1));
        assert_eq!(e.subjects(), 0);
    }

    #[test]
    fn segment_references_follow_their_target() {
        let e = Engine::new(0);
        let _ = def(&e, "base", P0, "field.shoe_size >= 42");
        let _ = def(
            &e,
            "derived",
            P0,
            r#"segment "base" and not trait.vip = true"#,
        );
        let _ = def(&e, "loop_a", P0, r#"segment "loop_b""#);
        let _ = def(&e, "loop_b", P0, r#"segment "loop_a""#);
        let f = FieldName::parse("shoe_size").unwrap();
        e.set_field(subject(1), &f, Some(FieldValue::Integer(43)));
        assert!(member(&e, "derived", 1));
        assert!(!member(&e, "loop_a", 1));
        // A change of the target's fact re-evaluates the referencing segment.
        e.set_field(subject(1), &f, Some(FieldValue::Integer(40)));
        assert!(!member(&e, "derived", 1));
        e.set_field(subject(1), &f, Some(FieldValue::Integer(44)));
        // Redefining the target re-evaluates the referencing segment.
        let _ = def(&e, "base", P0, "field.shoe_size >= 45");
        assert!(!member(&e, "derived", 1));
        e.remove("base");
        assert_eq!(e.is_member("base", &subject(1), all_p()), None);
        assert!(!member(&e, "derived", 1));
    }

    #[test]
    fn members_are_paged_in_subject_order() {
        let e = Engine::new(0);
        let _ = def(&e, "s", P0, "field.shoe_size exists");
        let f = FieldName::parse("shoe_size").unwrap();
        for n in [5u8, 1, 9, 3] {
            e.set_field(subject(n), &f, Some(FieldValue::Integer(1)));
        }
        let all = |_: &SubjectId| all_p();
        assert_eq!(
            e.members("s", &all, None, 2),
            Some(vec![subject(1), subject(3)])
        );
        assert_eq!(
            e.members("s", &all, Some(subject(3)), 10),
            Some(vec![subject(5), subject(9)])
        );
        let not5 = |s: &SubjectId| {
            if *s == subject(5) {
                PurposeSet::EMPTY
            } else {
                all_p()
            }
        };
        assert_eq!(
            e.members("s", &not5, Some(subject(1)), 10),
            Some(vec![subject(3), subject(9)])
        );
        assert_eq!(e.count("s", &not5), Some(3));
        assert_eq!(e.members("x", &all, None, 1), None);
    }

    #[test]
    fn define_reports_when_history_must_be_replayed() {
        let e = Engine::new(0);
        let d = def(&e, "a", P0, r#"count(track "A") in last 7 days >= 1"#);
        assert!(d.needs_replay && !d.replaced);
        let d = def(&e, "b", P0, r#"count(track "A") in last 5 days >= 2"#);
        assert!(!d.needs_replay, "a shorter window of kept facts");
        let d = def(&e, "b", P0, r#"count(track "A") in last 9 days >= 2"#);
        assert!(d.needs_replay && d.replaced, "a longer window");
        let d = def(&e, "c", 1, r#"count(track "A") in last 5 days >= 2"#);
        assert!(d.needs_replay, "another purpose's facts");
        let d = def(&e, "f0", 0, "field.shoe_size exists");
        assert!(d.needs_replay, "a field not kept before");
        let d = def(&e, "f1", 1, "field.shoe_size > 3");
        assert!(!d.needs_replay, "field values serve every purpose");
        let e2 = Engine::new(0);
        let bad = SegmentDef {
            name: "x".into(),
            purpose_bit: 0,
            rule: Rule::All(vec![]),
        };
        assert_eq!(e2.define(bad).unwrap_err().code(), "segment_syntax");
    }

    #[test]
    fn reasons_follow_what_was_needed() {
        let e = Engine::new(10);
        let _ = def(
            &e,
            "x",
            P0,
            r#"field.shoe_size exists and seen(track "A") within 5 days"#,
        );
        let f = FieldName::parse("shoe_size").unwrap();
        e.set_field(subject(1), &f, Some(FieldValue::Integer(44)));
        let fc = FieldCatalog::default();
        let explain = |r: &str| {
            e.explain(&parse_text(r).unwrap(), P0, &subject(1), &fc)
                .map(|v| v.iter().map(Reason::sentence).collect::<Vec<_>>())
        };
        assert_eq!(
            explain(
                r#"seen(track "A") within 5 days or field.shoe_size > 40 or field.shoe_size > 41"#
            ),
            Some(vec!["your shoe size is 44".to_owned()]),
            "only the first alternative that held"
        );
        assert_eq!(
            explain(r#"field.shoe_size > 40 and not seen(track "A") within 5 days"#),
            Some(vec![
                "your shoe size is 44".to_owned(),
                "you have not used A in the last 5 days".to_owned()
            ])
        );
        assert_eq!(
            explain(r#"not field.shoe_size = 40"#),
            Some(vec![
                "this did not apply to you: field.shoe_size = 40".to_owned()
            ])
        );
        assert_eq!(explain("field.shoe_size < 40"), None);
        assert_eq!(
            e.explain(
                &parse_text("not field.shoe_size exists").unwrap(),
                P0,
                &subject(9),
                &fc
            ),
            Some(vec![Reason::Negated {
                rule: "field.shoe_size exists".into()
            }]),
            "an unknown subject is evaluated over no facts"
        );
    }

    #[test]
    fn concurrent_ingest_agrees_with_sequential() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Engine>();
        let rule = r#"count(track "A") in last 3 days >= 40 and seen(track "B") within 2 days"#;
        let (a, b) = (Engine::new(10), Engine::new(10));
        let _ = def(&a, "x", P0, rule);
        let _ = def(&b, "x", P0, rule);
        let work = |e: &Engine, t: u8| {
            for i in 0..200u32 {
                let s = subject((i % 8) as u8);
                let ev = if (i + u32::from(t)) % 5 == 0 {
                    "B"
                } else {
                    "A"
                };
                e.apply_event(s, p(&[0]), 8 + i64::from(i % 3), &track(ev, &[]));
            }
        };
        std::thread::scope(|sc| {
            for t in 0..4 {
                let a = &a;
                sc.spawn(move || work(a, t));
            }
        });
        for t in 0..4 {
            work(&b, t);
        }
        let everyone = |_: &SubjectId| all_p();
        assert_eq!(
            a.members("x", &everyone, None, 100),
            b.members("x", &everyone, None, 100)
        );
        assert!(a.count("x", &everyone).unwrap() > 0);
    }

    /// Throughput with 100 segments; run with
    /// `cargo test --release -p candor-segments -- --ignored throughput --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let e = Engine::new(1000);
        for i in 0..100 {
            let rule = format!(
                r#"days(track "E{}" where k = {}) in last {} days >= 2 and field.shoe_size >= {}"#,
                i % 20,
                i % 3,
                7 + i % 30,
                30 + i % 10
            );
            let _ = def(&e, &format!("s{i}"), (i % 2) as u8, &rule);
        }
        let f = FieldName::parse("shoe_size").unwrap();
        let subjects: Vec<SubjectId> = (0..10_000u32)
            .map(|i| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&i.to_le_bytes());
                b[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
                SubjectId::from_bytes(b)
            })
            .collect();
        for s in &subjects {
            e.set_field(*s, &f, Some(FieldValue::Integer(40)));
        }
        let evs: Vec<Ev> = (0..60)
            .map(|i| track(&format!("E{}", i % 20), &[("k", Scalar::Number(i / 20))]))
            .collect();
        let n = 1_000_000usize;
        let start = std::time::Instant::now();
        for i in 0..n {
            let s = subjects[i % subjects.len()];
            let ev = &evs[(i * 7) % evs.len()];
            e.apply_event(s, p(&[0, 1]), 990 + (i % 11) as i64, ev);
        }
        let per = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "100 segments, 10k subjects: {per:.0} ns per event, {} bytes per subject",
            e.memory_bytes() / subjects.len()
        );
        let start = std::time::Instant::now();
        e.advance(1001);
        println!("advance over 10k subjects: {:?}", start.elapsed());
    }

    #[test]
    fn memory_per_subject_is_small() {
        let e = Engine::new(1000);
        let _ = def(&e, "a", P0, r#"days(track "A") in last 30 days >= 3"#);
        let _ = def(&e, "b", P0, r#"seen(track "B") within 7 days"#);
        let _ = def(&e, "c", P0, r#"field.shoe_size >= 42"#);
        let f = FieldName::parse("shoe_size").unwrap();
        let n = 10_000u32;
        for i in 0..n {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            let s = SubjectId::from_bytes(b);
            for d in 0..5 {
                e.apply_event(s, p(&[0]), 995 + d, &track("A", &[]));
            }
            e.apply_event(s, p(&[0]), 999, &track("B", &[]));
            e.set_field(s, &f, Some(FieldValue::Integer(42)));
        }
        let per = e.memory_bytes() / n as usize;
        println!("bytes per subject (2 usage atoms x 5 days, 1 field, 3 memberships): {per}");
        assert!(per < 450, "{per}");
    }
}

#[cfg(test)]
mod model;
