//! The demo's consent prompt data (issue 12): two saved variants, the standard dialog
//! and a compact bar, and a month of anonymous impressions and outcomes for both, so
//! the dashboard's charts have something to show. Deterministic for a seed; written
//! once (skipped when variants are already saved).
//!
//! The counts are simulated visitors: each impression is one person who accepts all,
//! rejects all, chooses per purpose or leaves without deciding, with rates that differ
//! a little between the variants. They go through the same store call as real counts.

use crate::error::ApiResult;
use crate::prompt::{self, VariantDto};
use crate::state::AppState;
use candor_core::prompt::Variant;
use candor_store::PromptCount;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// How people behave in front of one variant.
struct Behaviour {
    accept_all: f64,
    reject_all: f64,
    /// The rest choose per purpose, except this share who leave without deciding.
    leave: f64,
    /// purpose → chance that someone who chooses grants it
    grants: &'static [(&'static str, f64)],
}

const STANDARD: Behaviour = Behaviour {
    accept_all: 0.16,
    reject_all: 0.31,
    leave: 0.08,
    grants: &[
        ("analytics", 0.72),
        ("personalization", 0.44),
        ("ads_insights", 0.19),
        ("email_marketing", 0.15),
        ("loyalty", 0.55),
    ],
};

const COMPACT: Behaviour = Behaviour {
    accept_all: 0.14,
    reject_all: 0.36,
    leave: 0.11,
    grants: &[
        ("analytics", 0.66),
        ("personalization", 0.41),
        ("ads_insights", 0.18),
        ("email_marketing", 0.14),
        ("loyalty", 0.52),
    ],
};

/// The demo's second variant: the same choices as a bar along the bottom, in fewer words.
pub fn compact_bar() -> VariantDto {
    VariantDto {
        id: "compact_bar".into(),
        layout: "bar".into(),
        texts: BTreeMap::from([(
            "en".to_owned(),
            BTreeMap::from([
                ("title".to_owned(), "Your data, your choice".to_owned()),
                (
                    "intro".to_owned(),
                    "{operator} asks before using data about you. Refusing is as easy as accepting.".to_owned(),
                ),
            ]),
        )]),
        ..VariantDto::of(&Variant::standard())
    }
}

/// Saves the two demo variants and seeds `days` days of counts before today.
/// Returns the number of impressions written (0 when the demo was seeded before).
pub async fn seed(st: &AppState, seed: u64, days: i32) -> ApiResult<u64> {
    if !st.store.prompt_variants().await?.is_empty() {
        return Ok(0);
    }
    let variants = [
        (VariantDto::of(&Variant::standard()), STANDARD),
        (compact_bar(), COMPACT),
    ];
    let now = st.now_ms();
    for (dto, _) in &variants {
        let v = dto.parse(&st.catalog)?;
        // Fair as declared; the browser tests lint both as rendered.
        prompt::lint(&st.settings.prompt, &st.catalog, &v, None)?;
        st.store
            .save_prompt_variant(prompt::stored(&v, true, now))
            .await?;
    }
    st.prompt.invalidate();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6f6d_7074);
    let today = now.div_euclid(86_400_000) as i32;
    let mut counts = Vec::new();
    let mut shown = 0;
    for day in today - days..today {
        for (dto, b) in &variants {
            // More visitors on weekends (1970-01-01 was a Thursday).
            let weekend = matches!((day + 3).rem_euclid(7), 5 | 6);
            let n: u64 = rng.gen_range(260..340) + if weekend { 90 } else { 0 };
            shown += n;
            let mut add = |purpose: &str, metric: &str, count: u64| {
                if count > 0 {
                    counts.push(PromptCount {
                        day,
                        variant: dto.id.clone(),
                        purpose: purpose.to_owned(),
                        metric: metric.to_owned(),
                        count: count as i64,
                    });
                }
            };
            add("", "impression", n);
            let mut actions: BTreeMap<&str, u64> = BTreeMap::new();
            let mut granted: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for _ in 0..n {
                let x: f64 = rng.gen();
                let choice = if x < b.accept_all {
                    Some("accept_all")
                } else if x < b.accept_all + b.reject_all {
                    Some("reject_all")
                } else if x < 1.0 - b.leave {
                    Some("choose")
                } else {
                    None
                };
                let Some(action) = choice else { continue };
                *actions.entry(action).or_default() += 1;
                for (p, q) in b.grants {
                    let yes = match action {
                        "accept_all" => true,
                        "reject_all" => false,
                        _ => rng.gen::<f64>() < *q,
                    };
                    let e = granted.entry(p).or_default();
                    if yes {
                        e.0 += 1;
                    } else {
                        e.1 += 1;
                    }
                }
            }
            for (a, c) in actions {
                add("", a, c);
            }
            for (p, (yes, no)) in granted {
                add(p, "granted", yes);
                add(p, "refused", no);
            }
        }
    }
    st.store.add_prompt_counts(counts).await?;
    Ok(shown)
}
