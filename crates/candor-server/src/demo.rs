//! The demo operator's synthetic data: a few thousand subjects with realistic opt-in
//! rates and a month of app-usage events, so every screen has something true to show.
//!
//! Deterministic for a given seed and day: the same seed on the same UTC day produces
//! the same subjects, choices and events (subject pseudonyms are random by design, as
//! always). Consents go through the store's consent path and events through the very
//! ingestion gate the API uses, so the demo cannot show data consent would not allow.

use crate::error::ApiError;
use crate::pipeline;
use crate::state::AppState;
use candor_core::consent::{Action, Channel};
use candor_core::crypto::IdKind;
use candor_core::ledger::Evidence;
use candor_core::time::{UnixMillis, DAY_MS};
use candor_store::ConsentCommand;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// Tens of thousands, so that advertisers' answers look like real audience reports (about
/// a third opt in to `ads_insights`).
pub const DEFAULT_SUBJECTS: usize = 30_000;
/// The demo advertiser and its budget (ε per month, δ per month).
pub const ADVERTISER_ID: &str = "acme-ads";
pub const ADVERTISER_BUDGET: (f64, f64) = (10.0, 1e-5);
/// Share of people who mark their declared fields shareable in aggregate.
const SHARE_DECLARED: f64 = 0.65;
const COUNTRIES: &[(&str, f64)] = &[
    ("US", 0.3),
    ("GB", 0.12),
    ("DE", 0.12),
    ("FR", 0.1),
    ("ES", 0.07),
    ("IT", 0.06),
    ("NL", 0.05),
    ("SE", 0.04),
    ("PL", 0.04),
    ("BR", 0.04),
    ("IN", 0.03),
    ("JP", 0.03),
];
pub const DEFAULT_SEED: u64 = 42;

/// Probability that a person grants each purpose, given they did not reject all. The
/// shape follows published opt-in studies: analytics most, ads-related least.
const OPT_IN: &[(&str, f64)] = &[
    ("analytics", 0.72),
    ("personalization", 0.55),
    ("ads_insights", 0.34),
    ("email_marketing", 0.41),
    ("loyalty", 0.48),
];
const REJECT_ALL: f64 = 0.22;

const APPS: &[(&str, &str)] = &[
    ("FitTrack", "health_fitness"),
    ("RunBuddy", "health_fitness"),
    ("Spendly", "finance"),
    ("CoinJar", "finance"),
    ("PuzzleQuest", "games"),
    ("Blocky", "games"),
    ("Chatter", "social"),
    ("Snapgram", "social"),
    ("ShopMate", "shopping"),
    ("TripNest", "travel"),
    ("DailyBrief", "news"),
    ("Tunely", "music"),
];
const INTERESTS: &[&str] = &[
    "fashion", "sports", "outdoors", "music", "travel", "cooking", "gaming", "tech", "books",
    "fitness",
];
const PAGE_CATEGORIES: &[&str] = &[
    "sports",
    "technology",
    "fashion",
    "food",
    "travel",
    "finance",
    "gaming",
    "health",
];

pub fn anonymous_id(seed: u64, i: usize) -> String {
    format!("demo-{seed}-anon-{i:06}")
}

pub fn user_id(seed: u64, i: usize) -> String {
    format!("demo-{seed}-user-{i:06}")
}

fn progress(len: u64, what: &str) -> ProgressBar {
    // Hidden automatically when stderr is not a terminal (tests, CI, pipes).
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_owned());
    pb
}

pub struct Seeded {
    pub subjects: usize,
    pub consent_records: usize,
    pub events_accepted: usize,
    pub events_dropped: usize,
}

/// Seeds `n` subjects. Idempotent: re-running with the same seed adds nothing new
/// (consents are unchanged, events de-duplicate by messageId).
pub async fn seed(st: &AppState, seed: u64, n: usize, source: &str) -> Result<Seeded, ApiError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let today = st.now().start_of_day().0;
    let mut out = Seeded {
        subjects: n,
        consent_records: 0,
        events_accepted: 0,
        events_dropped: 0,
    };
    let pb = progress(n as u64, "subjects");
    let mut cmds = Vec::new();
    let mut people = Vec::with_capacity(n);
    for i in 0..n {
        let anon = anonymous_id(seed, i);
        let known = rng.gen_bool(0.6);
        let mut idents = vec![pipeline::identity(&st.master, IdKind::AnonymousId, &anon)];
        if known {
            idents.push(pipeline::identity(
                &st.master,
                IdKind::UserId,
                &user_id(seed, i),
            ));
        }
        let reject_all = rng.gen_bool(REJECT_ALL);
        let changes = st
            .catalog
            .purposes()
            .iter()
            .map(|p| {
                let rate = OPT_IN
                    .iter()
                    .find(|(id, _)| *id == p.id.as_str())
                    .map_or(0.3, |r| r.1);
                let grant = !reject_all && rng.gen_bool(rate);
                pipeline::consent::change(p, if grant { Action::Grant } else { Action::Refuse })
            })
            .collect();
        let decided = today - rng.gen_range(20..40) * DAY_MS + rng.gen_range(0..DAY_MS);
        cmds.push(ConsentCommand {
            identities: idents,
            authority: candor_store::Authority::Any,
            actor: demo_actor(),
            create: true,
            changes,
            channel: if rng.gen_bool(0.7) {
                Channel::Prompt
            } else {
                Channel::PreferenceCenter
            },
            evidence: Evidence::default().with("prompt", "demo-banner-v1"),
            time_ms: UnixMillis(decided),
            list: None,
        });
        people.push((anon, known.then(|| user_id(seed, i))));
        if cmds.len() == 500 {
            out.consent_records += apply(st, std::mem::take(&mut cmds)).await?;
            pb.inc(500);
        }
    }
    out.consent_records += apply(st, cmds).await?;
    pb.finish_and_clear();

    let pb = progress(n as u64, "events");
    let mut batch: Vec<String> = Vec::new();
    for (i, (anon, user)) in people.iter().enumerate() {
        let apps: Vec<&(&str, &str)> = APPS.iter().filter(|_| rng.gen_bool(0.35)).collect();
        let mut k = 0;
        let mut msg = |v: serde_json::Value| {
            k += 1;
            let mut v = v;
            v["messageId"] = json!(format!("demo-{seed}-{i}-{k}"));
            v["anonymousId"] = json!(anon);
            if let Some(u) = user {
                v["userId"] = json!(u);
            }
            v.to_string()
        };
        for (app, cat) in &apps {
            let installed = today - rng.gen_range(25..30) * DAY_MS;
            batch.push(msg(json!({"type": "track", "event": "App Installed",
                "properties": {"app": app, "app_category": cat},
                "timestamp": crate::segment::format_time(installed)})));
            let active_days = rng.gen_range(1..25);
            for d in 0..active_days {
                let t = today - (d as i64) * DAY_MS - rng.gen_range(0..DAY_MS);
                batch.push(msg(json!({"type": "track", "event": "App Session",
                    "properties": {"app": app, "app_category": cat, "duration_s": rng.gen_range(20..1800)},
                    "timestamp": crate::segment::format_time(t)})));
            }
        }
        for _ in 0..rng.gen_range(0..12) {
            let t = today - rng.gen_range(0..30) * DAY_MS - rng.gen_range(0..DAY_MS);
            let cat = PAGE_CATEGORIES[rng.gen_range(0..PAGE_CATEGORIES.len())];
            batch.push(msg(
                json!({"type": "page", "name": cat, "properties": {"category": cat},
                "timestamp": crate::segment::format_time(t)}),
            ));
        }
        // Known users shop and review (the loyalty program's earning rules), over the
        // last two months.
        if user.is_some() {
            for _ in 0..rng.gen_range(0..6) {
                let t = today - rng.gen_range(0..60) * DAY_MS - rng.gen_range(0..DAY_MS);
                let cents: i64 = rng.gen_range(500..25_000);
                batch.push(msg(json!({"type": "track", "event": "Order Completed",
                    "properties": {"revenue": cents as f64 / 100.0, "currency": "EUR"},
                    "timestamp": crate::segment::format_time(t)})));
            }
            if rng.gen_bool(0.3) {
                let t = today - rng.gen_range(0..30) * DAY_MS;
                batch.push(msg(json!({"type": "track", "event": "Review Submitted",
                    "properties": {"stars": rng.gen_range(1..6)},
                    "timestamp": crate::segment::format_time(t)})));
            }
        }
        let birth_year: i32 = rng.gen_range(1950..2006);
        // Named as the default `[[fields]]` are, so known users' values show in their
        // volunteered fields (the birthday month from the year, to keep the draws as
        // they were).
        let mut traits = json!({"birth_year": birth_year, "shoe_size": rng.gen_range(36..47),
            "age_band": age_band(2026 - birth_year), "country": country(&mut rng),
            "birthday_month": birth_year.rem_euclid(12) + 1});
        if user.is_none() {
            traits = json!({"age_band": traits["age_band"], "country": traits["country"]});
        } else if rng.gen_bool(0.5) {
            let interests: Vec<&str> = INTERESTS
                .iter()
                .copied()
                .filter(|_| rng.gen_bool(0.25))
                .collect();
            if !interests.is_empty() {
                traits["interests"] = json!(interests);
            }
        }
        let share: Vec<&str> = if rng.gen_bool(SHARE_DECLARED) {
            vec!["age_band", "country"]
        } else {
            vec![]
        };
        batch.push(msg(json!({"type": "identify", "traits": traits,
            "context": {"candor": {"share_in_aggregate": share}}})));
        if batch.len() >= 2000 {
            flush(st, source, &mut batch, &mut out).await?;
        }
        pb.inc(1);
    }
    flush(st, source, &mut batch, &mut out).await?;
    pb.finish_and_clear();
    Ok(out)
}

fn age_band(age: i32) -> &'static str {
    match age {
        ..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

fn country(rng: &mut ChaCha8Rng) -> &'static str {
    let mut x: f64 = rng.gen();
    for (c, p) in COUNTRIES {
        if x < *p {
            return c;
        }
        x -= p;
    }
    "other"
}

/// The demo's segments (issue 14), saved through the same path as the admin API, and a
/// few redemptions so wallets have history. Idempotent: segments are replaced by name
/// and each redemption has its own key.
pub async fn seed_audiences(st: &AppState, seed: u64, n: usize) -> Result<usize, ApiError> {
    const SEGMENTS: &[(&str, &str, &str, &str)] = &[
        (
            "fitness_fans",
            "personalization",
            r#"days(track "App Session" where app_category = "health_fitness") in last 30 days >= 5"#,
            "Used a fitness app on at least 5 days this month",
        ),
        (
            "travellers",
            "personalization",
            r#"field.interests has "travel" or seen(page where category = "travel") within 30 days"#,
            "Told us they like travel, or read about it this month",
        ),
        (
            "budget_minded",
            "personalization",
            r#"days(track "App Session" where app_category = "finance") in last 30 days >= 3 and not field.age_band = "65+""#,
            "Regular finance-app users",
        ),
        (
            "regular_shoppers",
            "loyalty",
            r#"count(track "Order Completed") in last 60 days >= 3"#,
            "Three or more orders in two months",
        ),
    ];
    let now = st.now_ms();
    for (name, purpose, text, description) in SEGMENTS {
        let rule = candor_segments::parse_text(text)
            .map_err(|e| ApiError::new(crate::error::Code::Internal, e.to_string()))?;
        let record = candor_store::loyalty::SegmentRecord {
            name: (*name).into(),
            purpose: (*purpose).into(),
            rule: candor_segments::to_json(&rule).to_string(),
            description: (*description).into(),
            created_ms: now,
            updated_ms: now,
        };
        // Checked as the admin API checks a segment: the demo's own catalog allows them.
        let saved = crate::audiences::parse_saved(st, record)
            .map_err(|e| ApiError::new(crate::error::Code::Internal, e))?;
        let purpose_id = candor_core::PurposeId::parse(purpose)
            .map_err(|e| ApiError::new(crate::error::Code::Internal, e.to_string()))?;
        if candor_segments::check(
            &saved.rule,
            &purpose_id,
            &st.catalog,
            &st.settings.fields,
            &|_| None,
        )
        .is_err()
        {
            continue;
        }
        st.audiences.save(st, saved).await?;
    }
    st.audiences.record_sizes(st).await?;
    // A coffee for one member in ten who can afford it.
    let mut redeemed = 0;
    if let Some((p, _)) = crate::loyalty::program(st) {
        if let Some(coffee) = p.config().rewards.first() {
            for i in (0..n).step_by(10) {
                let hash = st.master.lookup_hash(IdKind::UserId, &user_id(seed, i));
                let Some(subject) = st.store.resolve(&hash) else {
                    continue;
                };
                let what = candor_store::loyalty::LoyaltyChange::Redeem {
                    reward: coffee.id.clone(),
                    cost: coffee.cost,
                };
                let op = crate::loyalty::op(
                    st,
                    subject,
                    format!("demo-{i}"),
                    what,
                    &coffee.title,
                    "demo",
                );
                if let candor_store::loyalty::LoyaltyOutcome::Applied { .. } =
                    st.store.loyalty(op).await?
                {
                    redeemed += 1;
                }
            }
        }
    }
    Ok(redeemed)
}

/// Creates the demo advertiser (fixed, documented key; all features and dimensions) if
/// it does not exist yet.
pub async fn seed_advertiser(st: &AppState) -> Result<(), ApiError> {
    use crate::audience;
    if st.store.advertiser(ADVERTISER_ID).await?.is_some() {
        return Ok(());
    }
    let now = st.now_ms();
    let schema = st.store.features().schema();
    st.store
        .upsert_advertiser(candor_store::Advertiser {
            id: ADVERTISER_ID.into(),
            name: "Acme Ads (demo)".into(),
            key_hash: audience::key_hash(crate::config::demo::ADVERTISER_KEY),
            budget: audience::budget(ADVERTISER_BUDGET.0, ADVERTISER_BUDGET.1),
            period: candor_store::BudgetPeriod::Month,
            allowed_features: candor_insights::FeatureKind::ALL
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            allowed_dimensions: std::iter::once("category".to_owned())
                .chain(schema.declared.iter().map(|f| f.name.clone()))
                .collect(),
            disabled: false,
            created_ms: UnixMillis(now),
            updated_ms: UnixMillis(now),
            lifetime: None,
        })
        .await?;
    Ok(())
}

/// The demo's consent records say they came through the demo backend's write key.
fn demo_actor() -> candor_core::ledger::Actor {
    candor_core::SourceId::parse("demo_backend").map_or(
        candor_core::ledger::Actor::Admin,
        candor_core::ledger::Actor::Source,
    )
}

async fn apply(st: &AppState, cmds: Vec<ConsentCommand>) -> Result<usize, ApiError> {
    let outs = st.store.apply_consents_atomically(cmds).await?;
    Ok(outs.iter().map(|o| o.records.len()).sum())
}

async fn flush(
    st: &AppState,
    source: &str,
    batch: &mut Vec<String>,
    out: &mut Seeded,
) -> Result<(), ApiError> {
    let raws: Vec<&str> = batch.iter().map(String::as_str).collect();
    let r = pipeline::ingest::run(
        st,
        pipeline::ingest::Request {
            source,
            credential: pipeline::gate::Credential::Server,
            raws: &raws,
            implied: None,
            sent_at: None,
            gpc: false,
        },
    )
    .await?;
    out.events_accepted += r.accepted;
    out.events_dropped += r
        .dropped
        .iter()
        .filter(|d| d.reason != crate::telemetry::DropReason::Duplicate)
        .count();
    batch.clear();
    Ok(())
}
