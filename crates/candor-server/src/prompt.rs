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
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

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

/// A prompt variant: its layout, first-layer buttons, what is pre-ticked or bundled,
/// its wording and style. Purposes are named by id.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptVariant, example = json!({"id": "compact_bar", "layout": "bar", "buttons": ["accept", "reject", "choose"], "weight": 1}))]
pub struct VariantDto {
    /// 1 to 64 characters of a-z, 0-9 and `_`, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub id: String,
    /// Its share of the experiment among the active variants (default 1).
    #[serde(default = "one")]
    #[schema(maximum = 1000000)]
    pub weight: u32,
    /// Default `modal`.
    #[serde(default = "modal")]
    #[schema(value_type = LayoutDoc)]
    pub layout: String,
    /// The first layer's controls, in order, each once (default all three).
    #[serde(default = "three")]
    #[schema(value_type = Vec<ControlDoc>, min_items = 1)]
    pub buttons: Vec<String>,
    /// Purposes ticked before the person chooses (the linter refuses this for consent).
    #[serde(default)]
    pub preticked: Vec<String>,
    /// Purposes offered as one choice.
    #[serde(default)]
    pub bundles: Vec<Vec<String>>,
    /// Purposes whose notice is not shown.
    #[serde(default)]
    pub hide_notices: Vec<String>,
    /// Purposes presented as legitimate interest.
    #[serde(default)]
    pub legitimate_interest: Vec<String>,
    /// What a close (×) button records: default `none` (no such button).
    #[serde(default = "none")]
    #[schema(value_type = CloseButtonDoc)]
    pub close_button: String,
    /// Language tag → text key (`title`, `intro`, `accept`, `reject`, `choose`,
    /// `chooseTitle`, `save`, `back`, `manage`, `close`, `policy`, `gpcNote`,
    /// `gpcLocked`, `legitimateInterest`, `error`, `myData`) → text (at most 600
    /// characters), over the built-in wording.
    #[serde(default)]
    pub texts: BTreeMap<String, BTreeMap<String, String>>,
    /// Extra CSS: at most 8 KiB, no `@import`, `url(` or `</`.
    #[serde(default)]
    #[schema(max_length = 8192)]
    pub css: String,
}

/// The prompt's layout (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PromptLayout)]
enum LayoutDoc {
    Modal,
    Bar,
}

/// A first-layer control (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PromptControl)]
enum ControlDoc {
    Accept,
    Reject,
    Choose,
}

/// What a close (×) button records (documentation only: parsed as text).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PromptCloseButton)]
enum CloseButtonDoc {
    /// No close button.
    None,
    Reject,
    Accept,
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

/// What `candor-lint.js` measured of a variant rendered in a browser.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptRendering)]
pub struct RenderedDto {
    /// The prompt's background colour, `[r, g, b]`.
    #[schema(min_items = 3, max_items = 3)]
    pub surface: [u8; 3],
    /// At most 16.
    #[schema(max_items = 16)]
    pub first_layer: Vec<ButtonDto>,
    /// At most 64.
    #[schema(max_items = 64)]
    pub choices: Vec<ChoiceDto>,
    /// Purpose id → the notice text shown (at most 64).
    pub notices: BTreeMap<String, String>,
}

/// A first-layer button as rendered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptRenderedButton)]
pub struct ButtonDto {
    /// `accept`, `reject`, `choose` or `close`.
    pub role: String,
    /// `[x, y, width, height]` in CSS pixels.
    #[schema(min_items = 4, max_items = 4)]
    pub rect: [f64; 4],
    /// Text colour, `[r, g, b]`.
    #[schema(min_items = 3, max_items = 3)]
    pub color: [u8; 3],
    /// Background colour, `[r, g, b]`.
    #[schema(min_items = 3, max_items = 3)]
    pub background: [u8; 3],
    pub font_size: f64,
    pub font_weight: u32,
    pub visible: bool,
    pub in_viewport: bool,
}

/// A choice on the second layer as rendered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PromptRenderedChoice)]
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

/// What `candor.js` shows: the wording, the purposes with their notices, and the IAB
/// settings.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptConfig {
    /// The language shown (a language tag).
    pub language: String,
    pub operator: PromptOperator,
    pub variant: ServedVariant,
    pub purposes: Vec<PromptPurpose>,
    pub gdpr_applies: bool,
    /// Whether candor.js should post anonymous counts (`POST /v1/prompt/events`).
    pub measure: bool,
    pub iab: PromptIab,
}

/// Who asks for consent.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptOperator {
    pub name: String,
    pub policy_url: String,
}

/// A variant as shown: its texts resolved for one language (text key → text).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServedVariant {
    pub id: String,
    pub weight: u32,
    #[schema(value_type = LayoutDoc)]
    pub layout: String,
    #[schema(value_type = Vec<ControlDoc>)]
    pub buttons: Vec<String>,
    pub preticked: Vec<String>,
    pub bundles: Vec<Vec<String>>,
    pub hide_notices: Vec<String>,
    pub legitimate_interest: Vec<String>,
    #[schema(value_type = CloseButtonDoc)]
    pub close_button: String,
    /// Every text key → its text in the language shown.
    pub texts: BTreeMap<String, String>,
    pub css: String,
}

/// A purpose as the prompt shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptPurpose {
    pub id: String,
    pub title: String,
    pub notice: PromptNotice,
    /// Counts as sale or sharing under US state law (a GPC signal refuses it).
    pub sale_or_sharing: bool,
    /// Google Consent Mode signals a grant of this purpose allows.
    pub consent_mode: Vec<String>,
}

/// A notice in the language shown, with the hash the ledger records for it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PromptNotice {
    pub version: u32,
    pub text: String,
    /// SHA-256 of `text`, hex.
    pub sha256: String,
    pub language: String,
}

/// The IAB TCF settings candor.js exposes through `__tcfapi`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptIab {
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub gvl_version: u16,
    pub policy_version: u8,
}

/// What `candor.js` shows someone reading `lang`: wording, purposes with the notice in
/// that language (each with the hash the ledger will record), and IAB settings.
pub fn prompt_config(st: &AppState, variant: &Variant, lang: &Language) -> PromptConfig {
    let cat = &st.catalog;
    let purposes = cat
        .purposes()
        .iter()
        .map(|p| {
            let l = p.localized(cat.language(), Some(lang));
            PromptPurpose {
                id: p.id.as_str().to_owned(),
                title: l.title.to_owned(),
                notice: PromptNotice {
                    version: l.notice.version,
                    text: l.notice.text.clone(),
                    sha256: hex::encode(l.notice.hash),
                    language: l.language.as_str().to_owned(),
                },
                sale_or_sharing: p.sale_or_sharing,
                consent_mode: p.consent_mode.clone(),
            }
        })
        .collect();
    let v = VariantDto::of(variant);
    let variant = ServedVariant {
        id: v.id,
        weight: v.weight,
        layout: v.layout,
        buttons: v.buttons,
        preticked: v.preticked,
        bundles: v.bundles,
        hide_notices: v.hide_notices,
        legitimate_interest: v.legitimate_interest,
        close_button: v.close_button,
        texts: st
            .prompt
            .texts
            .resolve(variant, lang, &st.settings.operator.name),
        css: v.css,
    };
    PromptConfig {
        language: lang.as_str().to_owned(),
        operator: PromptOperator {
            name: st.settings.operator.name.clone(),
            policy_url: st.settings.operator.policy_url.clone(),
        },
        variant,
        purposes,
        gdpr_applies: st.settings.prompt.gdpr_applies,
        measure: st.settings.prompt.measure,
        iab: PromptIab {
            cmp_id: st.iab.cmp_id,
            cmp_version: st.iab.cmp_version,
            gvl_version: st.iab.gvl.version,
            policy_version: st.iab.gvl.policy_version.max(4),
        },
    }
}

/// [`prompt_config`] as JSON (the dashboard's preview).
pub fn config(st: &AppState, variant: &Variant, lang: &Language) -> Value {
    serde_json::to_value(prompt_config(st, variant, lang)).unwrap_or(Value::Null)
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

/// One opt-in rate with its 95% Wilson interval.
#[derive(Clone, Debug, Serialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OptInRate)]
pub struct Rate {
    pub granted: u64,
    pub impressions: u64,
    /// `granted / impressions`; `null` without impressions.
    pub rate: Option<f64>,
    /// `[low, high]`; `null` without impressions.
    #[schema(min_items = 2, max_items = 2)]
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

/// One variant's counts and opt-in rates over the period.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PromptVariantStats)]
pub struct VariantReport {
    pub variant: String,
    pub impressions: u64,
    /// `accept_all`, `reject_all`, `choose`, `close` → how many times.
    pub actions: BTreeMap<String, u64>,
    /// purpose → opt-in rate over the period
    pub purposes: BTreeMap<String, Rate>,
    /// purpose → `[day, rate]` per day with impressions, oldest first
    #[schema(value_type = BTreeMap<String, Vec<DayRate>>)]
    pub daily: BTreeMap<String, Vec<(String, Rate)>>,
}

/// A variant's opt-in rate for one purpose compared with the baseline's.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PromptComparison)]
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

/// Opt-in per variant, purpose and day, and the variants compared.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PromptStats)]
pub struct StatsReport {
    /// The first day (`2026-12-01`).
    pub from: String,
    /// The last day, inclusive.
    pub to: String,
    pub variants: Vec<VariantReport>,
    pub comparisons: Vec<ComparisonReport>,
    /// Comparisons with too few outcomes on either side for the test.
    #[schema(value_type = Vec<UncomparedPair>)]
    pub not_enough_data: Vec<(String, String, String)>,
}

/// `[day, rate]`: a day with impressions (`2026-12-01`) and its opt-in rate
/// (documentation only: serialized from a tuple). Its schema names both items
/// (`prefixItems`) and, for generators that ignore that keyword, allows either in each.
pub struct DayRate;

impl utoipa::PartialSchema for DayRate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AllOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
            SchemaFormat, Type,
        };
        use utoipa::openapi::Ref;
        let day = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
                .build()
        };
        let rate = || Ref::from_schema_name(<Rate as ToSchema>::name());
        ArrayBuilder::new()
            .description(Some(
                "`[day, rate]`: a day with impressions and its opt-in rate",
            ))
            .prefix_items([
                Schema::Object(day()),
                Schema::AllOf(AllOfBuilder::new().item(rate()).build()),
            ])
            .items(OneOfBuilder::new().item(day()).item(rate()))
            .min_items(Some(2))
            .max_items(Some(2))
            .into()
    }
}

impl ToSchema for DayRate {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            <Rate as ToSchema>::name().into(),
            <Rate as utoipa::PartialSchema>::schema(),
        ));
        <Rate as ToSchema>::schemas(schemas);
    }
}

/// `[purpose, baseline, variant]`: a comparison with too few outcomes on either side
/// for the test (documentation only: serialized from a tuple).
pub struct UncomparedPair;

impl utoipa::PartialSchema for UncomparedPair {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
        let text = || ObjectBuilder::new().schema_type(Type::String).build();
        ArrayBuilder::new()
            .description(Some(
                "`[purpose, baseline, variant]`: too few outcomes on either side for the test",
            ))
            .prefix_items([
                Schema::Object(text()),
                Schema::Object(text()),
                Schema::Object(text()),
            ])
            .items(text())
            .min_items(Some(3))
            .max_items(Some(3))
            .into()
    }
}

impl ToSchema for UncomparedPair {}

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
