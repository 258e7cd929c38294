//! `candor-bench segments` (issue 14): the segment engine and personalization, in
//! process, at a million subjects.
//!
//! Builds the engine the server runs (`candor_segments::Engine`) with 100 segments of
//! the kinds operators write (usage counts and distinct days in windows, recency,
//! fields, and/or/not) and the offers of a two-placement catalog, fills it with N
//! subjects' month of events and their volunteered fields, then measures:
//!
//! - membership maintenance per event: `apply_event` for fresh events on random
//!   subjects, each re-evaluating the segments that event can change (ns/event,
//!   events/s), and the day's rollover (`advance`) over everyone;
//! - `personalize`'s decision (`OfferCatalog::decide` with reasons) for random subjects:
//!   p50, p99, max;
//! - memory: RSS before and after filling, per subject, and the engine's own estimate.
//!
//! What it leaves out: reading and opening events from the store (the server's feed),
//! which costs what an `events_page` read and an AEAD open cost (see `ingest`).

use anyhow::Result;
use candor_core::event::EventKind;
use candor_core::field::{FieldCatalog, FieldInput, FieldKind, FieldName, FieldSpec};
use candor_core::{PurposeId, PurposeSet, SubjectId};
use candor_segments::{Engine, EventView, Offer, OfferCatalog, Scalar, SegmentDef};
use clap::Args as ClapArgs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

#[derive(ClapArgs)]
pub struct Args {
    /// Subjects to fill the engine with.
    #[arg(long, default_value_t = 1_000_000)]
    subjects: usize,
    /// Events per subject over the last 30 days while filling.
    #[arg(long, default_value_t = 12)]
    events_per_subject: usize,
    /// Fresh events timed after filling.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// personalize decisions timed.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
}

const CATEGORIES: [&str; 10] = [
    "health_fitness",
    "finance",
    "games",
    "social",
    "shopping",
    "travel",
    "news",
    "music",
    "food",
    "education",
];
const INTERESTS: [&str; 10] = [
    "fashion", "sports", "outdoors", "music", "travel", "cooking", "gaming", "tech", "books",
    "fitness",
];
const PERSONALIZATION: u8 = 1;

struct Ev {
    kind: EventKind,
    name: &'static str,
    category: &'static str,
}

impl EventView for Ev {
    fn kind(&self) -> EventKind {
        self.kind
    }
    fn name(&self) -> Option<&str> {
        Some(self.name)
    }
    fn property(&self, name: &str) -> Option<Scalar> {
        match name {
            "app_category" | "category" => Some(Scalar::Text(self.category.to_owned())),
            _ => None,
        }
    }
    fn trait_value(&self, _: &str) -> Option<Scalar> {
        None
    }
}

fn fields() -> Result<FieldCatalog> {
    let name = |n: &str| FieldName::parse(n).map_err(|e| anyhow::anyhow!("{e}"));
    let p = vec![PurposeId::parse("personalization").map_err(|e| anyhow::anyhow!("{e}"))?];
    let specs = vec![
        FieldSpec::new(
            name("interests")?,
            "Interests".into(),
            FieldKind::ManyOf {
                values: INTERESTS.iter().map(|s| (*s).to_owned()).collect(),
            },
            p.clone(),
            false,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        FieldSpec::new(
            name("shoe_size")?,
            "Shoe size".into(),
            FieldKind::Integer { min: 16, max: 52 },
            p,
            false,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    ];
    FieldCatalog::new(specs).map_err(|e| anyhow::anyhow!("{e}"))
}

/// 100 segments: for each category, ten shapes of rule.
fn segments() -> Result<Vec<SegmentDef>> {
    let mut out = Vec::new();
    for (c, cat) in CATEGORIES.iter().enumerate() {
        let interest = INTERESTS[c];
        let texts = [
            format!(
                r#"days(track "App Session" where app_category = "{cat}") in last 30 days >= 3"#
            ),
            format!(
                r#"days(track "App Session" where app_category = "{cat}") in last 7 days >= 2"#
            ),
            format!(
                r#"count(track "App Session" where app_category = "{cat}") in last 14 days > 5"#
            ),
            format!(r#"seen(track "App Session" where app_category = "{cat}") within 3 days"#),
            format!(r#"seen(page where category = "{cat}") within 14 days"#),
            format!(r#"field.interests has "{interest}""#),
            format!(
                r#"field.interests has "{interest}" or days(track "App Session" where app_category = "{cat}") in last 30 days >= 5"#
            ),
            format!(
                r#"field.interests has "{interest}" and not seen(track "App Session" where app_category = "{cat}") within 7 days"#
            ),
            format!(
                r#"count(page where category = "{cat}") in last 30 days >= 2 and field.shoe_size >= 40"#
            ),
            format!(
                r#"(days(track "App Session" where app_category = "{cat}") in last 30 days >= 2 or seen(page where category = "{cat}") within 30 days) and not field.interests has "gaming""#
            ),
        ];
        for (i, t) in texts.iter().enumerate() {
            out.push(SegmentDef {
                name: format!("s_{cat}_{i}"),
                purpose_bit: PERSONALIZATION,
                rule: candor_segments::parse_text(t).map_err(|e| anyhow::anyhow!("{t}: {e}"))?,
            });
        }
    }
    Ok(out)
}

fn offers() -> Result<OfferCatalog> {
    let mut out = Vec::new();
    for (i, cat) in CATEGORIES.iter().enumerate() {
        let t = format!(
            r#"field.interests has "{}" or days(track "App Session" where app_category = "{cat}") in last 30 days >= 3"#,
            INTERESTS[i]
        );
        out.push(Offer {
            id: format!("offer_{cat}"),
            placement: if i % 2 == 0 { "home" } else { "inbox" }.into(),
            title: format!("Something about {cat}"),
            priority: i as i32,
            when: Some(candor_segments::parse_text(&t).map_err(|e| anyhow::anyhow!("{e}"))?),
        });
    }
    for p in ["home", "inbox"] {
        out.push(Offer {
            id: format!("default_{p}"),
            placement: p.into(),
            title: "For everyone".into(),
            priority: 0,
            when: None,
        });
    }
    OfferCatalog::new(out).map_err(|e| anyhow::anyhow!("{e}"))
}

/// This process's `VmRSS`/`VmHWM` in KiB.
fn rss_kib(field: &str) -> u64 {
    crate::ingest::rss_kib(std::process::id(), field)
}

fn event(rng: &mut ChaCha8Rng) -> Ev {
    let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
    if rng.gen_bool(0.25) {
        Ev {
            kind: EventKind::Page,
            name: "Article",
            category,
        }
    } else {
        Ev {
            kind: EventKind::Track,
            name: "App Session",
            category,
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(a: Args) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let today = 20_000i64;
    let fields = fields()?;
    let interests = fields
        .get("interests")
        .ok_or_else(|| anyhow::anyhow!("interests"))?;
    let shoe = fields
        .get("shoe_size")
        .ok_or_else(|| anyhow::anyhow!("shoe_size"))?;
    let engine = Engine::new(today);
    for d in segments()? {
        let _ = engine.define(d).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let catalog = offers()?;
    let _ = engine
        .define_offers(PERSONALIZATION, &catalog.rules())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let purposes = PurposeSet::from_bits((1 << PERSONALIZATION) | 1);
    let granted = PurposeSet::from_bits(1 << PERSONALIZATION);

    println!(
        "segments: 100 segments and {} offer rules, {} subjects, {} events each over 30 days",
        catalog.rules().len(),
        a.subjects,
        a.events_per_subject
    );
    let rss0 = rss_kib("VmRSS:");
    let subjects: Vec<SubjectId> = (0..a.subjects).map(|_| SubjectId::random()).collect();
    let rss_ids = rss_kib("VmRSS:");
    let start = Instant::now();
    let mut filled = 0u64;
    for s in &subjects {
        for _ in 0..a.events_per_subject {
            let day = today - rng.gen_range(0..30);
            engine.apply_event(*s, purposes, day, &event(&mut rng));
            filled += 1;
        }
        if rng.gen_bool(0.4) {
            let picked: Vec<&str> = INTERESTS
                .iter()
                .copied()
                .filter(|_| rng.gen_bool(0.2))
                .collect();
            if let Ok(v) = interests.parse_value(FieldInput::List(&picked)) {
                engine.set_field(*s, &interests.name, Some(v));
            }
        }
        if rng.gen_bool(0.3) {
            if let Ok(v) = shoe.parse_value(FieldInput::Number(rng.gen_range(36..47))) {
                engine.set_field(*s, &shoe.name, Some(v));
            }
        }
    }
    let fill = start.elapsed();
    let rss1 = rss_kib("VmRSS:");
    println!(
        "fill:     {filled} events in {:.1} s ({:.0} ns/event, {:.0} events/s, cold subjects)",
        fill.as_secs_f64(),
        fill.as_nanos() as f64 / filled as f64,
        filled as f64 / fill.as_secs_f64()
    );
    let per_subject = (rss1.saturating_sub(rss_ids)) as f64 * 1024.0 / a.subjects as f64;
    println!(
        "memory:   RSS {:.0} MiB -> {:.0} MiB: {per_subject:.0} bytes per subject (engine's estimate {:.0}), {} subjects held",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        engine.memory_bytes() as f64 / engine.subjects().max(1) as f64,
        engine.subjects(),
    );

    // Membership maintenance: fresh events today on random (known) subjects.
    let stream: Vec<(usize, Ev)> = (0..a.events)
        .map(|_| (rng.gen_range(0..subjects.len()), event(&mut rng)))
        .collect();
    let start = Instant::now();
    for (i, ev) in &stream {
        engine.apply_event(subjects[*i], purposes, today, ev);
    }
    let t = start.elapsed();
    println!(
        "maintain: {} events in {:.2} s: {:.0} ns/event, {:.0} events/s (one thread, 100 segments)",
        a.events,
        t.as_secs_f64(),
        t.as_nanos() as f64 / a.events as f64,
        a.events as f64 / t.as_secs_f64()
    );
    let start = Instant::now();
    engine.advance(today + 1);
    println!(
        "rollover: advance one day over {} subjects in {:.2} s",
        engine.subjects(),
        start.elapsed().as_secs_f64()
    );

    // personalize: one decision, with reasons, for a random subject.
    let mut lat = Vec::with_capacity(a.decisions);
    let mut personal = 0u64;
    for i in 0..a.decisions {
        let s = &subjects[rng.gen_range(0..subjects.len())];
        let placement = if i % 2 == 0 { "home" } else { "inbox" };
        let t = Instant::now();
        let d = catalog.decide(
            &engine,
            placement,
            Some(s),
            PERSONALIZATION,
            granted,
            &fields,
            3,
        );
        let ns = t.elapsed().as_nanos() as u64;
        if d.is_some_and(|d| d.personalized) {
            personal += 1;
        }
        lat.push(ns);
    }
    lat.sort_unstable();
    println!(
        "personalize: {} decisions ({:.0}% personalized): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        a.decisions,
        personal as f64 * 100.0 / a.decisions as f64,
        pct(&lat, 0.5) as f64 / 1000.0,
        pct(&lat, 0.99) as f64 / 1000.0,
        *lat.last().unwrap_or(&0) as f64 / 1000.0
    );
    let start = Instant::now();
    let sizes: u64 = (0..10)
        .map(|i| {
            engine
                .count(&format!("s_{}_{i}", CATEGORIES[i]), &|_| granted)
                .unwrap_or(0)
        })
        .sum();
    println!(
        "count:    ten segments' sizes ({sizes} members) in {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    println!("peak RSS: {:.0} MiB", rss_kib("VmHWM:") as f64 / 1024.0);
    Ok(())
}
