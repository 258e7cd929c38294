//! The consent prompt's server side (issue 12): what `candor.js` is told to show, the
//! variants the operator saved (JSON at this edge, [`candor_core::prompt::Variant`]
//! inside), and the anonymous counts of what people chose.
//!
//! Counts are the only thing the prompt sends without an identifier. They are added up
//! in memory per (day, variant, purpose, metric) and written to the store every few
//! seconds and at shutdown, so a busy site's impressions cost one small transaction
//! per interval, not one per page view. A crash loses at most that interval of counts,
//! which are statistics, never consent: consent goes through the consent API.

use crate::config::PromptSettings;
use crate::error::{ApiError, ApiResult, Code, Violation};
use crate::state::AppState;
use candor_core::lang::Language;
use candor_core::prompt::{
    self as core, CloseButton, Control, Layout, Rect, Rendered, RenderedButton, RenderedChoice,
    Rgb, Variant, TEXT_KEYS,
};
use candor_core::purpose::Catalog;
use candor_core::{PurposeId, VariantId};
use candor_store::{PromptCount, Store, StoredVariant};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BUILTIN_TEXTS: &str = include_str!("prompt-texts.toml");
/// candor.js with its stylesheet, as served at `/candor.js`.
const SCRIPT: &str = include_str!("../../../web/candor.js");
const STYLE: &str = include_str!("../../../web/candor.css");
/// How stale a node's copy of the saved variants may be.
const VARIANTS_TTL: Duration = Duration::from_secs(5);
const MAX_CSS: usize = 8 * 1024;
const MAX_TEXT: usize = 600;

/// The served script: the stylesheet goes in as a JS string, so one cacheable file
/// carries both and the page needs no inline style.
pub fn script() -> &'static str {
    static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let css = serde_json::to_string(STYLE).unwrap_or_else(|_| "\"\"".into());
        SCRIPT.replacen("'__CANDOR_CSS__'", &css, 1)
    })
}

/// The wording, per language: the built-in texts, under a variant's own.
pub struct Texts(BTreeMap<Language, BTreeMap<String, String>>);

impl Texts {
    fn builtin() -> Result<Self, String> {
        let raw: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(BUILTIN_TEXTS).map_err(|e| format!("prompt texts: {e}"))?;
        let mut out = BTreeMap::new();
        for (lang, texts) in raw {
            let l = Language::parse(&lang).map_err(|e| e.to_string())?;
            if let Some(missing) = TEXT_KEYS.iter().find(|k| !texts.contains_key(**k)) {
                return Err(format!("prompt texts: {lang} lacks {missing}"));
            }
            out.insert(l, texts);
        }
        Ok(Self(out))
    }

    /// Every text for a variant in `lang`: the variant's wording for the closest
    /// language it has, over the built-in wording for the closest language Candor
    /// has, over English.
    fn resolve(
        &self,
        variant: &Variant,
        lang: &Language,
        operator: &str,
    ) -> BTreeMap<String, String> {
        let en = Language::english();
        let mut out = self.0.get(&en).cloned().unwrap_or_default();
        if let Some(l) = lang.best_match(self.0.keys()) {
            out.extend(self.0[l].clone());
        }
        if let Some(l) = lang.best_match(variant.texts.keys()) {
            out.extend(variant.texts[l].clone());
        }
        for t in out.values_mut() {
            *t = t.replace("{operator}", operator);
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CountKey {
    day: i32,
    variant: VariantId,
    purpose: Option<PurposeId>,
    metric: &'static str,
}

/// The prompt's shared state: wording, the cached variants and pending counts.
pub struct PromptState {
    texts: Texts,
    variants: RwLock<Option<(Instant, Arc<Vec<Saved>>)>>,
    pending: Mutex<HashMap<CountKey, i64>>,
}

/// A saved variant, parsed.
#[derive(Clone, Debug)]
pub struct Saved {
    pub variant: Variant,
    pub active: bool,
    pub updated_ms: i64,
}

impl PromptState {
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            texts: Texts::builtin()?,
            variants: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Every saved variant (at most [`VARIANTS_TTL`] old on this node).
    pub async fn saved(&self, st: &AppState) -> ApiResult<Arc<Vec<Saved>>> {
        if let Some((at, list)) = &*self.variants.read() {
            if at.elapsed() < VARIANTS_TTL {
                return Ok(list.clone());
            }
        }
        let mut list = Vec::new();
        for s in st.store.prompt_variants().await? {
            let dto: VariantDto = serde_json::from_str(&s.definition).map_err(|e| {
                ApiError::new(Code::Internal, format!("saved variant {}: {e}", s.id))
            })?;
            list.push(Saved {
                variant: dto.parse(&st.catalog)?,
                active: s.active,
                updated_ms: s.updated_ms,
            });
        }
        let list = Arc::new(list);
        *self.variants.write() = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The variants in the experiment now: the active saved ones, or the built-in
    /// standard when none is.
    pub async fn active(&self, st: &AppState) -> ApiResult<Vec<Variant>> {
        let active: Vec<Variant> = self
            .saved(st)
            .await?
            .iter()
            .filter(|s| s.active)
            .map(|s| s.variant.clone())
            .collect();
        Ok(if active.is_empty() {
            vec![Variant::standard()]
        } else {
            active
        })
    }

    /// Forgets the cached variants (after this node saved one).
    pub fn invalidate(&self) {
        *self.variants.write() = None;
    }

    pub fn count(
        &self,
        day: i32,
        variant: &VariantId,
        purpose: Option<&PurposeId>,
        metric: &'static str,
    ) {
        *self
            .pending
            .lock()
            .entry(CountKey {
                day,
                variant: variant.clone(),
                purpose: purpose.cloned(),
                metric,
            })
            .or_default() += 1;
    }

    /// Writes the pending counts. On failure they are put back for the next try.
    pub async fn flush(&self, store: &dyn Store) -> ApiResult<()> {
        let taken: Vec<(CountKey, i64)> = self.pending.lock().drain().collect();
        if taken.is_empty() {
            return Ok(());
        }
        let rows = taken
            .iter()
            .map(|(k, n)| PromptCount {
                day: k.day,
                variant: k.variant.to_string(),
                purpose: k
                    .purpose
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                metric: k.metric.to_owned(),
                count: *n,
            })
            .collect();
        if let Err(e) = store.add_prompt_counts(rows).await {
            let mut pending = self.pending.lock();
            for (k, n) in taken {
                *pending.entry(k).or_default() += n;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// A variant as JSON (saved, served and posted by the admin).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VariantDto {
    pub id: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "modal")]
    pub layout: String,
    #[serde(default = "three")]
    pub buttons: Vec<String>,
    #[serde(default)]
    pub preticked: Vec<String>,
    #[serde(default)]
    pub bundles: Vec<Vec<String>>,
    #[serde(default)]
    pub hide_notices: Vec<String>,
    #[serde(default)]
    pub legitimate_interest: Vec<String>,
    #[serde(default = "none")]
    pub close_button: String,
    #[serde(default)]
    pub texts: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub css: String,
}

fn one() -> u32 {
    1
}
fn modal() -> String {
    "modal".into()
}
fn none() -> String {
    "none".into()
}
fn three() -> Vec<String> {
    ["accept", "reject", "choose"].map(String::from).to_vec()
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidRequest, m)
}

impl VariantDto {
    pub fn parse(&self, catalog: &Catalog) -> ApiResult<Variant> {
        let id = VariantId::parse(&self.id).map_err(|e| invalid(e.to_string()))?;
        let purpose = |name: &String| -> ApiResult<PurposeId> {
            Ok(crate::routes::known_purpose(catalog, name)?.id.clone())
        };
        let purposes = |names: &[String]| names.iter().map(purpose).collect::<ApiResult<Vec<_>>>();
        let mut buttons = Vec::new();
        for b in &self.buttons {
            let c = Control::parse(b).ok_or_else(|| {
                invalid(format!("buttons: {b:?} is not accept, reject or choose"))
            })?;
            if buttons.contains(&c) {
                return Err(invalid(format!("buttons: {b} is listed twice")));
            }
            buttons.push(c);
        }
        if buttons.is_empty() {
            return Err(invalid("buttons: name at least one first-layer control"));
        }
        let mut texts = BTreeMap::new();
        for (lang, map) in &self.texts {
            let l = Language::parse(lang).map_err(|e| invalid(format!("texts: {e}")))?;
            for (k, t) in map {
                if !TEXT_KEYS.contains(&k.as_str()) {
                    return Err(invalid(format!(
                        "texts.{lang}: {k:?} is not one of {TEXT_KEYS:?}"
                    )));
                }
                if t.chars().count() > MAX_TEXT {
                    return Err(invalid(format!(
                        "texts.{lang}.{k}: at most {MAX_TEXT} characters"
                    )));
                }
            }
            texts.insert(l, map.clone());
        }
        // The prompt loads nothing from elsewhere: no imports, no URLs, no escaping
        // the stylesheet.
        let lower = self.css.to_ascii_lowercase();
        if self.css.len() > MAX_CSS
            || ["@import", "url(", "</", "expression("]
                .iter()
                .any(|b| lower.contains(b))
        {
            return Err(invalid(format!(
                "css: at most {MAX_CSS} bytes, with no @import, url( or </"
            )));
        }
        if self.weight > 1_000_000 {
            return Err(invalid("weight: at most 1000000"));
        }
        let mut bundles = Vec::new();
        for b in &self.bundles {
            bundles.push(purposes(b)?);
        }
        Ok(Variant {
            id,
            weight: self.weight,
            layout: Layout::parse(&self.layout).ok_or_else(|| invalid("layout: modal or bar"))?,
            buttons,
            preticked: purposes(&self.preticked)?,
            bundles,
            hide_notices: purposes(&self.hide_notices)?,
            legitimate_interest: purposes(&self.legitimate_interest)?,
            close_button: CloseButton::parse(&self.close_button)
                .ok_or_else(|| invalid("closeButton: none, reject or accept"))?,
            texts,
            css: self.css.clone(),
        })
    }

    pub fn of(v: &Variant) -> Self {
        let names = |l: &[PurposeId]| l.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Self {
            id: v.id.to_string(),
            weight: v.weight,
            layout: v.layout.as_str().into(),
            buttons: v.buttons.iter().map(|b| b.as_str().to_owned()).collect(),
            preticked: names(&v.preticked),
            bundles: v.bundles.iter().map(|b| names(b)).collect(),
            hide_notices: names(&v.hide_notices),
            legitimate_interest: names(&v.legitimate_interest),
            close_button: v.close_button.as_str().into(),
            texts: v
                .texts
                .iter()
                .map(|(l, t)| (l.to_string(), t.clone()))
                .collect(),
            css: v.css.clone(),
        }
    }
}

/// What `candor-lint.js` measured in the browser.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenderedDto {
    pub surface: [u8; 3],
    pub first_layer: Vec<ButtonDto>,
    pub choices: Vec<ChoiceDto>,
    pub notices: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ButtonDto {
    pub role: String,
    pub rect: [f64; 4],
    pub color: [u8; 3],
    pub background: [u8; 3],
    pub font_size: f64,
    pub font_weight: u32,
    pub visible: bool,
    pub in_viewport: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChoiceDto {
    pub purposes: Vec<String>,
    pub checked: bool,
    pub label: String,
}

impl RenderedDto {
    pub fn into_core(self) -> ApiResult<Rendered> {
        if self.first_layer.len() > 16 || self.choices.len() > 64 || self.notices.len() > 64 {
            return Err(invalid("rendered: too many elements"));
        }
        let rgb = |c: [u8; 3]| Rgb(c[0], c[1], c[2]);
        let mut first_layer = Vec::new();
        for b in self.first_layer {
            if b.rect.iter().chain([&b.font_size]).any(|x| !x.is_finite()) {
                return Err(invalid("rendered: sizes must be finite numbers"));
            }
            first_layer.push(RenderedButton {
                role: b.role,
                rect: Rect {
                    x: b.rect[0],
                    y: b.rect[1],
                    w: b.rect[2],
                    h: b.rect[3],
                },
                color: rgb(b.color),
                background: rgb(b.background),
                font_size: b.font_size,
                font_weight: b.font_weight,
                visible: b.visible,
                in_viewport: b.in_viewport,
            });
        }
        Ok(Rendered {
            surface: rgb(self.surface),
            first_layer,
            choices: self
                .choices
                .into_iter()
                .map(|c| RenderedChoice {
                    purposes: c.purposes,
                    checked: c.checked,
                    label: c.label,
                })
                .collect(),
            notices: self.notices,
        })
    }
}

/// Lints a variant; `unfair_prompt` naming every broken rule, or `Ok`.
pub fn lint(
    settings: &PromptSettings,
    catalog: &Catalog,
    variant: &Variant,
    rendered: Option<&Rendered>,
) -> ApiResult<()> {
    let found = core::lint(variant, catalog, &settings.forbidden_wording, rendered);
    if found.is_empty() {
        return Ok(());
    }
    let rules: Vec<&str> = found.iter().map(|v| v.rule).collect();
    Err(ApiError::new(
        Code::UnfairPrompt,
        format!("the variant breaks {}", rules.join(", ")),
    )
    .with_violations(
        found
            .into_iter()
            .map(|v| Violation {
                rule: v.rule,
                element: v.element,
                detail: v.detail,
            })
            .collect(),
    ))
}

/// What `candor.js` shows someone reading `lang`: wording, purposes with the notice in
/// that language (each with the hash the ledger will record), and IAB settings.
pub fn config(st: &AppState, variant: &Variant, lang: &Language) -> Value {
    let cat = &st.catalog;
    let purposes: Vec<Value> = cat
        .purposes()
        .iter()
        .map(|p| {
            let l = p.localized(cat.language(), Some(lang));
            json!({
                "id": p.id.as_str(),
                "title": l.title,
                "notice": {
                    "version": l.notice.version,
                    "text": l.notice.text,
                    "sha256": hex::encode(l.notice.hash),
                    "language": l.language.as_str(),
                },
                "saleOrSharing": p.sale_or_sharing,
                "consentMode": p.consent_mode,
            })
        })
        .collect();
    let mut v = serde_json::to_value(VariantDto::of(variant)).unwrap_or(Value::Null);
    v["texts"] = json!(st
        .prompt
        .texts
        .resolve(variant, lang, &st.settings.operator.name));
    json!({
        "language": lang.as_str(),
        "operator": {
            "name": st.settings.operator.name,
            "policyUrl": st.settings.operator.policy_url,
        },
        "variant": v,
        "purposes": purposes,
        "gdprApplies": st.settings.prompt.gdpr_applies,
        "measure": st.settings.prompt.measure,
        "iab": {
            "cmpId": st.iab.cmp_id,
            "cmpVersion": st.iab.cmp_version,
            "gvlVersion": st.iab.gvl.version,
            "policyVersion": st.iab.gvl.policy_version.max(4),
        },
    })
}

/// The stored form of a variant.
pub fn stored(v: &Variant, active: bool, now_ms: i64) -> StoredVariant {
    StoredVariant {
        id: v.id.to_string(),
        definition: serde_json::to_string(&VariantDto::of(v)).unwrap_or_default(),
        active,
        updated_ms: now_ms,
    }
}

/// The metrics a prompt event may add to.
pub const ACTIONS: &[&str] = &["accept_all", "reject_all", "choose", "close"];

/// One rate with its 95% Wilson interval.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub granted: u64,
    pub impressions: u64,
    pub rate: Option<f64>,
    pub interval: Option<[f64; 2]>,
}

impl Rate {
    fn new(granted: u64, impressions: u64) -> Self {
        Self {
            granted,
            impressions,
            rate: (impressions > 0).then(|| granted as f64 / impressions as f64),
            interval: candor_core::optin::wilson(
                granted.min(impressions),
                impressions,
                candor_core::optin::Z95,
            )
            .map(|(lo, hi)| [lo, hi]),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantReport {
    pub variant: String,
    pub impressions: u64,
    pub actions: BTreeMap<String, u64>,
    /// purpose → opt-in rate over the period
    pub purposes: BTreeMap<String, Rate>,
    /// purpose → rate per day, oldest first
    pub daily: BTreeMap<String, Vec<(String, Rate)>>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonReport {
    pub purpose: String,
    /// The baseline (the first variant) and the variant compared with it.
    pub a: String,
    pub b: String,
    pub difference: f64,
    pub z: f64,
    pub p_value: f64,
    /// p below 0.05 divided by the number of comparisons made (Bonferroni).
    pub significant: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    pub from: String,
    pub to: String,
    pub variants: Vec<VariantReport>,
    pub comparisons: Vec<ComparisonReport>,
    /// Comparisons with too few outcomes on either side for the test.
    pub not_enough_data: Vec<(String, String, String)>,
}

pub fn day_string(day: i32) -> String {
    crate::segment::format_time(i64::from(day) * 86_400_000)[..10].to_owned()
}

/// Opt-in rates per variant, purpose and day from the stored totals, and each
/// variant compared with the first (alphabetically) per purpose.
pub fn report(catalog: &Catalog, counts: &[PromptCount], from: i32, to: i32) -> StatsReport {
    let mut by_variant: BTreeMap<&str, Vec<&PromptCount>> = BTreeMap::new();
    for c in counts {
        by_variant.entry(&c.variant).or_default().push(c);
    }
    let sum = |rows: &[&PromptCount], purpose: &str, metric: &str, day: Option<i32>| -> u64 {
        rows.iter()
            .filter(|c| {
                c.purpose == purpose && c.metric == metric && day.is_none_or(|d| c.day == d)
            })
            .map(|c| c.count.max(0) as u64)
            .sum()
    };
    let mut variants = Vec::new();
    for (name, rows) in &by_variant {
        let impressions = sum(rows, "", "impression", None);
        let actions = ACTIONS
            .iter()
            .map(|a| ((*a).to_owned(), sum(rows, "", a, None)))
            .collect();
        let mut purposes = BTreeMap::new();
        let mut daily = BTreeMap::new();
        for p in catalog.purposes() {
            let id = p.id.as_str();
            purposes.insert(
                id.to_owned(),
                Rate::new(sum(rows, id, "granted", None), impressions),
            );
            let days: Vec<(String, Rate)> = (from..=to)
                .filter_map(|d| {
                    let shown = sum(rows, "", "impression", Some(d));
                    (shown > 0).then(|| {
                        (
                            day_string(d),
                            Rate::new(sum(rows, id, "granted", Some(d)), shown),
                        )
                    })
                })
                .collect();
            daily.insert(id.to_owned(), days);
        }
        variants.push(VariantReport {
            variant: (*name).to_owned(),
            impressions,
            actions,
            purposes,
            daily,
        });
    }
    let mut comparisons = Vec::new();
    let mut not_enough_data = Vec::new();
    if let Some((base, rest)) = variants.split_first() {
        for v in rest {
            for p in catalog.purposes() {
                let id = p.id.as_str();
                let (ra, rb) = (&base.purposes[id], &v.purposes[id]);
                match candor_core::optin::compare(
                    (ra.granted, ra.impressions),
                    (rb.granted, rb.impressions),
                ) {
                    Some(c) => comparisons.push(ComparisonReport {
                        purpose: id.to_owned(),
                        a: base.variant.clone(),
                        b: v.variant.clone(),
                        difference: c.difference,
                        z: c.z,
                        p_value: c.p_value,
                        significant: false,
                    }),
                    None => not_enough_data.push((
                        id.to_owned(),
                        base.variant.clone(),
                        v.variant.clone(),
                    )),
                }
            }
        }
    }
    let m = comparisons.len().max(1) as f64;
    for c in &mut comparisons {
        c.significant = c.p_value < 0.05 / m;
    }
    StatsReport {
        from: day_string(from),
        to: day_string(to),
        variants,
        comparisons,
        not_enough_data,
    }
}
