//! The operator's configuration: one TOML file with built-in defaults.
//!
//! Parsing is strict: an unknown key is an error naming the key and its line, because a
//! misspelt `sale_or_sharing` silently ignored would be a privacy bug. Secrets may be
//! given inline or, better, as the name of an environment variable (`*_env` keys), and
//! are held in [`Sensitive`] so they never reach a log.

use candor_core::event::EventKind;
use candor_core::field::{FieldCatalog, FieldKind, FieldName, FieldSpec};
use candor_core::lang::Language;
use candor_core::purpose::{Category, EventRule, Notice, Purpose, Translation};
use candor_core::{CategoryId, PurposeId, Sensitive, SourceId};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub mod email;
pub mod program;

pub use program::{LoyaltySettings, PersonalizationSettings};

pub const DEFAULT_CATALOG: &str = include_str!("default-catalog.toml");

/// The Google Consent Mode signals a purpose may map to.
pub const CONSENT_MODE_SIGNALS: &[&str] = &[
    "ad_storage",
    "analytics_storage",
    "ad_user_data",
    "ad_personalization",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("config: environment variable {var} (named by {key}) is not set")]
    MissingEnv { key: String, var: String },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    operator: RawOperator,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    admin: RawSecret,
    #[serde(default)]
    subject_tokens: RawSecretKeyed,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    iab: RawIab,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    insights: RawInsights,
    #[serde(default)]
    prompt: RawPrompt,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    cors: RawCors,
    /// The language of the purposes' own titles and notices.
    notice_language: Option<String>,
    categories: Option<Vec<RawCategory>>,
    purposes: Option<Vec<RawPurpose>>,
    event_mapping: Option<Vec<RawRule>>,
    /// `[[fields]]`: volunteered (zero-party) fields; the defaults when absent.
    fields: Option<Vec<RawField>>,
    /// `[personalization]`, `[[offers]]`, `[loyalty]` (issue 14, `config::program`).
    personalization: Option<program::RawPersonalization>,
    offers: Option<Vec<program::RawOffer>>,
    loyalty: Option<program::RawLoyalty>,
    /// `[email]` (issue 16, `config::email`).
    email: Option<email::RawEmail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    label: String,
    /// text | one_of | many_of | integer | month
    kind: String,
    /// one_of and many_of only: every value the field may take.
    values: Option<Vec<String>>,
    /// text only (default 100).
    max_length: Option<usize>,
    /// integer only, both required.
    min: Option<i64>,
    max: Option<i64>,
    /// The purposes that may use the value.
    #[serde(default)]
    purposes: Vec<String>,
    /// May count in aggregate insights (one_of only; needs the insights purpose).
    #[serde(default)]
    aggregate: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    name: Option<String>,
    policy_url: Option<String>,
    contact: Option<String>,
    jurisdiction: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    token: Option<String>,
    token_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecretKeyed {
    secret: Option<String>,
    secret_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    url_env: Option<String>,
    pool_size: Option<usize>,
    statement_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    resync_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIab {
    cmp_id: Option<u16>,
    cmp_version: Option<u16>,
    consent_language: Option<String>,
    publisher_country_code: Option<String>,
    vendor_list: Option<PathBuf>,
    #[serde(default)]
    trusted_cmp_ids: Vec<u16>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInsights {
    purpose: Option<String>,
    min_group_size: Option<i64>,
    allow_insecure_rng: Option<bool>,
    declared_category: Option<String>,
    declared: Option<Vec<RawDeclared>>,
    /// Every category activities may be counted under (others count as "other");
    /// `candor_insights::DEFAULT_CATEGORIES` when absent.
    categories: Option<Vec<String>>,
    activity: Option<Vec<RawActivity>>,
    /// The operator's cap across all advertisers per period (none by default).
    total_budget: Option<RawTotalBudget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTotalBudget {
    epsilon: f64,
    #[serde(default)]
    delta: f64,
    period: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrompt {
    gdpr_applies: Option<bool>,
    measure: Option<bool>,
    #[serde(default)]
    forbidden_wording: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_in_flight: Option<usize>,
    client_ip_header: Option<String>,
    new_subjects_per_minute: Option<u32>,
    browser_key: Option<RawRate>,
    server_key: Option<RawRate>,
    per_address: Option<RawRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    per_second: f64,
    burst: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeclared {
    field: String,
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivity {
    category: String,
    feature: String,
    property: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    id: String,
    kind: String,
    write_key: Option<String>,
    write_key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    id: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: String,
    title: String,
    notice_version: u32,
    notice: String,
    categories: Vec<String>,
    retention_days: u32,
    #[serde(default)]
    recipients: Vec<String>,
    sale_or_sharing: bool,
    #[serde(default)]
    tcf_purposes: Vec<u8>,
    #[serde(default)]
    tcf_special_features: Vec<u8>,
    /// GPP usnat opt-out fields; defaults to SaleOptOut and SharingOptOut for
    /// sale/sharing purposes.
    usnat_opt_outs: Option<Vec<String>>,
    dpv: Option<String>,
    /// Google Consent Mode signals this purpose's grant allows.
    #[serde(default)]
    consent_mode: Vec<String>,
    /// language tag → title and notice in that language (same notice version).
    #[serde(default)]
    translations: BTreeMap<String, RawTranslation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTranslation {
    title: String,
    notice: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "type")]
    kind: String,
    event: Option<String>,
    category: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    notice_language: String,
    categories: Vec<RawCategory>,
    purposes: Vec<RawPurpose>,
    event_mapping: Vec<RawRule>,
}

/// Browser keys are public (they ship in page source); server keys are secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Browser,
    Server,
}

#[derive(Clone, Debug)]
pub struct SourceSpec {
    pub id: SourceId,
    pub kind: SourceKind,
    pub write_key: Sensitive<String>,
}

#[derive(Clone, Debug)]
pub struct OperatorInfo {
    pub name: String,
    pub policy_url: String,
    pub contact: String,
    pub jurisdiction: String,
}

/// Purposes without their store-assigned bits: the catalog is completed at start.
#[derive(Clone, Debug)]
pub struct CatalogSpec {
    /// The language of the purposes' own titles and notices.
    pub language: Language,
    pub purposes: Vec<Purpose>,
    pub categories: Vec<Category>,
    pub rules: Vec<(EventRule, CategoryId)>,
}

impl CatalogSpec {
    pub fn purpose_ids(&self) -> Vec<PurposeId> {
        self.purposes.iter().map(|p| p.id.clone()).collect()
    }

    /// Completes the catalog with the bits the store assigned.
    pub fn build(
        &self,
        bits: &HashMap<PurposeId, u8>,
    ) -> Result<candor_core::purpose::Catalog, ConfigError> {
        let mut purposes = self.purposes.clone();
        for p in &mut purposes {
            p.bit = *bits
                .get(&p.id)
                .ok_or_else(|| ConfigError::Invalid(format!("no bit assigned to {}", p.id)))?;
        }
        candor_core::purpose::Catalog::new(purposes, self.categories.clone(), self.rules.clone())
            .map(|c| c.with_language(self.language.clone()))
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// How Candor speaks the IAB's consent strings (`[iab]`).
#[derive(Clone, Debug)]
pub struct IabSettings {
    /// The operator's registered CMP id (0 until registered with the IAB).
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub consent_language: String,
    pub publisher_country_code: String,
    /// A local copy of the IAB Global Vendor List (JSON); never fetched at run time.
    pub vendor_list: Option<PathBuf>,
    /// Use the built-in demo vendor list when no file is given (the demo operator).
    pub demo_vendor_list: bool,
    /// CMPs whose notices the operator declares equivalent to its own: only their TC
    /// strings can grant purposes when imported; others can only narrow.
    pub trusted_cmp_ids: Vec<u16>,
}

/// `[database]`: PostgreSQL for scale-out; absent means the embedded SQLite file.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/db`; may hold a password, hence Sensitive.
    pub url: Sensitive<String>,
    pub pool_size: usize,
    pub statement_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Full consent-cache resync period, the fallback for a missed notification.
    pub resync_interval_ms: u64,
}

impl DatabaseSettings {
    pub fn new(url: String) -> Self {
        Self {
            url: Sensitive::new(url),
            pool_size: 8,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            resync_interval_ms: 30_000,
        }
    }
}

/// Everything Candor needs to run, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// PostgreSQL, or `None` for the embedded SQLite store in `data_dir`.
    pub database: Option<DatabaseSettings>,
    pub operator: OperatorInfo,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub catalog: CatalogSpec,
    pub sources: Vec<SourceSpec>,
    pub admin_token: Option<Sensitive<String>>,
    pub subject_token_secret: Option<Sensitive<String>>,
    pub iab: IabSettings,
    pub insights: InsightsSettings,
    /// `[[fields]]`: what a person may volunteer about themselves. The insights'
    /// declared fields are this catalog's `aggregate` fields.
    pub fields: FieldCatalog,
    /// What personalization may use and the operator's offers (`[[offers]]`).
    pub personalization: PersonalizationSettings,
    /// The loyalty program, when there is one (`[loyalty]`, or the built-in one).
    pub loyalty: Option<LoyaltySettings>,
    pub prompt: PromptSettings,
    pub limits: LimitSettings,
    /// `[cors] allowed_origins`: the publishers' page origins whose scripts may call the
    /// browser routes (none by default).
    pub cors_origins: Vec<String>,
    /// Run as the demo operator (`serve --demo`): also serves the demo page at `/demo/`.
    pub demo: bool,
    /// Email on consent (`[email]`); `None`: no mail is sent.
    pub email: Option<email::EmailSettings>,
    /// Record every response here (`crate::response_log`). Set only by the API test
    /// suite, never from the config file: the record holds response bodies.
    pub response_log: Option<PathBuf>,
}

/// A token bucket's rate: `per_second` tokens refill, up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// `[limits]`: what bounds the edge (issue 11, part 3). Every default is on.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// A connection must send a whole request head within this (also how long an
    /// idle keep-alive connection waits for the next request's first byte to count).
    pub header_read_timeout: std::time::Duration,
    /// A request body must arrive whole within this.
    pub body_read_timeout: std::time::Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Connections open at once; more are refused at accept.
    pub max_connections: usize,
    /// Requests being handled at once; more are answered `503 overloaded`.
    pub max_in_flight: usize,
    /// A header that carries the client's address (set by a trusted reverse proxy);
    /// without it the connection's peer address is the client's.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Per browser write key (all its visitors together); `None` is unlimited.
    pub browser_key: Option<Rate>,
    /// Per server write key; `None` (the default) is unlimited.
    pub server_key: Option<Rate>,
    /// Per client address (IPv6 by /64), for browser-key and unauthenticated requests.
    pub per_address: Option<Rate>,
    /// New subjects a browser source may create per minute (consent from a new
    /// anonymous id), so a script cannot grow the ledger and memory without bound.
    pub new_subjects_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(15),
            idle_timeout: std::time::Duration::from_secs(60),
            max_connections: 4096,
            max_in_flight: 1024,
            client_ip_header: None,
            browser_key: Some(Rate {
                per_second: 5000.0,
                burst: 10_000.0,
            }),
            server_key: None,
            per_address: Some(Rate {
                per_second: 50.0,
                burst: 200.0,
            }),
            new_subjects_per_minute: 6000,
        }
    }
}

fn limit_settings(raw: RawLimits) -> Result<LimitSettings, ConfigError> {
    let d = LimitSettings::default();
    let bad = |m: &str| ConfigError::Invalid(format!("limits.{m}"));
    let ms = |v: Option<u64>, default: std::time::Duration, what: &str| match v
        .map(std::time::Duration::from_millis)
    {
        None => Ok(default),
        Some(t) if t.as_millis() >= 10 && t.as_secs() <= 3600 => Ok(t),
        Some(_) => Err(bad(&format!("{what} must be 10 to 3600000 ms"))),
    };
    // `per_second = 0` turns a limit off.
    let rate = |r: Option<RawRate>, default: Option<Rate>, what: &str| match r {
        None => Ok(default),
        Some(r) if r.per_second == 0.0 => Ok(None),
        Some(r)
            if r.per_second > 0.0
                && r.burst >= 1.0
                && r.per_second.is_finite()
                && r.burst.is_finite() =>
        {
            Ok(Some(Rate {
                per_second: r.per_second,
                burst: r.burst,
            }))
        }
        Some(_) => Err(bad(&format!(
            "{what}: per_second must be > 0 (or 0 for no limit) and burst >= 1"
        ))),
    };
    let count = |v: Option<usize>, default: usize, what: &str| match v {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(n),
        Some(_) => Err(bad(&format!("{what} must be at least 1"))),
    };
    Ok(LimitSettings {
        header_read_timeout: ms(
            raw.header_read_timeout_ms,
            d.header_read_timeout,
            "header_read_timeout_ms",
        )?,
        body_read_timeout: ms(
            raw.body_read_timeout_ms,
            d.body_read_timeout,
            "body_read_timeout_ms",
        )?,
        idle_timeout: ms(raw.idle_timeout_ms, d.idle_timeout, "idle_timeout_ms")?,
        max_connections: count(raw.max_connections, d.max_connections, "max_connections")?,
        max_in_flight: count(raw.max_in_flight, d.max_in_flight, "max_in_flight")?,
        client_ip_header: raw
            .client_ip_header
            .map(|h| {
                axum::http::HeaderName::try_from(h.as_str())
                    .map_err(|_| bad(&format!("client_ip_header: {h:?} is not a header name")))
            })
            .transpose()?,
        browser_key: rate(raw.browser_key, d.browser_key, "browser_key")?,
        server_key: rate(raw.server_key, d.server_key, "server_key")?,
        per_address: rate(raw.per_address, d.per_address, "per_address")?,
        new_subjects_per_minute: match raw.new_subjects_per_minute {
            None => d.new_subjects_per_minute,
            Some(n) if n >= 1 => n,
            Some(_) => return Err(bad("new_subjects_per_minute must be at least 1")),
        },
    })
}

fn cors_origins(raw: RawCors) -> Result<Vec<String>, ConfigError> {
    for o in &raw.allowed_origins {
        // scheme://host[:port], or scheme://host:* for any port.
        let base = o.strip_suffix(":*").unwrap_or(o);
        let host = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"));
        let ok = o.len() <= 256
            && host.is_some_and(|h| !h.is_empty() && !h.contains(['/', '*', ' ', '@']));
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "cors.allowed_origins: {o:?} is not an origin like https://shop.example (or http://host:* for any port)"
            )));
        }
    }
    Ok(raw.allowed_origins)
}

/// `[prompt]`: the consent prompt candor.js shows (issue 12).
#[derive(Clone, Debug)]
pub struct PromptSettings {
    /// What `__tcfapi` reports as `gdprApplies`.
    pub gdpr_applies: bool,
    /// Count impressions and outcomes per variant (anonymous totals, no identifier).
    pub measure: bool,
    /// Wording the prompt linter refuses in any variant (compared case-insensitively).
    pub forbidden_wording: Vec<String>,
}

/// `[insights]`: audience insights for advertisers (issue 5).
#[derive(Clone, Debug)]
pub struct InsightsSettings {
    /// The purpose whose grant makes a subject's features usable; `None` disables insights
    /// (the catalog has no such purpose).
    pub purpose: Option<PurposeId>,
    /// Groups whose noisy count is below this are suppressed: named for public keys; for
    /// private keys it raises the partition-selection threshold (post-processing).
    pub min_group_size: i64,
    /// Lets a build without cryptographically secure noise answer anyway (tests only).
    pub allow_insecure_rng: bool,
    pub schema: candor_insights::Schema,
    pub rules: candor_insights::extract::Rules,
    /// `[insights] total_budget`: what all advertisers together may spend per period.
    pub total_budget: Option<TotalBudget>,
}

/// The operator's privacy budget across all advertisers for each period: however many
/// advertisers there are, what the population's data answers in one period is bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TotalBudget {
    pub epsilon: f64,
    pub delta: f64,
    pub period: candor_store::BudgetPeriod,
}

/// Declared fields advertisers may use when the config names none (the default
/// fields' aggregate ones, see [`DEFAULT_FIELDS`]).
pub const DEFAULT_DECLARED: &[(&str, &[&str])] = &[
    (
        "age_band",
        &["18-24", "25-34", "35-44", "45-54", "55-64", "65+"],
    ),
    (
        "country",
        &[
            "US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "BR", "IN", "JP", "other",
        ],
    ),
];

/// `[insights] purpose`, checked against the catalog: `ads_insights` when it is there
/// and none is named; `None` (insights off) otherwise.
fn insights_purpose(
    raw: Option<&str>,
    catalog: &CatalogSpec,
) -> Result<Option<PurposeId>, ConfigError> {
    let bad = |m: String| ConfigError::Invalid(format!("insights.{m}"));
    Ok(match raw {
        Some(p) => {
            let id = PurposeId::parse(p).map_err(|e| bad(format!("purpose: {e}")))?;
            if !catalog.purpose_ids().contains(&id) {
                return Err(bad(format!(
                    "purpose: {p:?} is not a purpose of the catalog"
                )));
            }
            Some(id)
        }
        None => PurposeId::parse("ads_insights")
            .ok()
            .filter(|id| catalog.purpose_ids().contains(id)),
    })
}

fn insights_settings(
    raw: RawInsights,
    catalog: &CatalogSpec,
    purpose: Option<PurposeId>,
    fields: &FieldCatalog,
) -> Result<InsightsSettings, ConfigError> {
    use candor_insights::extract::{ActivityRule, Rules};
    use candor_insights::{DeclaredField, FeatureKind, Schema};
    let bad = |m: String| ConfigError::Invalid(format!("insights.{m}"));
    let schema = Schema {
        // The declared fields are the field catalog's aggregate ones (`field_catalog`
        // has folded `[[insights.declared]]` into it).
        declared: fields
            .aggregate()
            .map(|f| DeclaredField {
                name: f.name.to_string(),
                values: f.kind.values().to_vec(),
            })
            .collect(),
        categories: match raw.categories {
            Some(list) => {
                let names = list
                    .iter()
                    .map(|c| {
                        candor_insights::Category::parse(c).ok_or_else(|| {
                            bad(format!(
                                "categories: {c:?} is not a category name (1 to 64 of a-z 0-9 _ - .)"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let sorted = candor_insights::features::sorted_categories(names.iter().cloned());
                if sorted.len() != names.len() {
                    return Err(bad(format!(
                        "categories must list 1 to {} distinct names",
                        candor_insights::features::MAX_CATEGORIES
                    )));
                }
                sorted
            }
            None => candor_insights::features::default_categories(),
        },
    };
    schema.validate().map_err(|e| bad(format!("{e}")))?;
    let mut rules = Rules::default();
    if let Some(c) = raw.declared_category {
        rules.declared_category = c;
    }
    if let Some(list) = raw.activity {
        rules.activity = list
            .into_iter()
            .map(|a| {
                let kind = FeatureKind::parse(&a.feature).ok_or_else(|| {
                    bad(format!(
                        "activity: feature must be app_installs, app_usage or browsing, not {:?}",
                        a.feature
                    ))
                })?;
                Ok(ActivityRule {
                    data_category: a.category,
                    kind,
                    property: a.property,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
    }
    if purpose.is_some() {
        let known: Vec<&str> = catalog.categories.iter().map(|c| c.id.as_str()).collect();
        for c in rules
            .activity
            .iter()
            .map(|r| r.data_category.as_str())
            .chain([rules.declared_category.as_str()])
        {
            if !known.contains(&c) {
                return Err(bad(format!("{c:?} is not a data category of the catalog")));
            }
        }
    }
    let min_group_size = raw.min_group_size.unwrap_or(20);
    if !(0..=1_000_000).contains(&min_group_size) {
        return Err(bad("min_group_size must be between 0 and 1000000".into()));
    }
    let total_budget = match raw.total_budget {
        Some(t) => {
            if !(t.epsilon.is_finite() && t.epsilon > 0.0 && t.epsilon <= 1_000_000.0) {
                return Err(bad("total_budget.epsilon must be in (0, 1000000]".into()));
            }
            if !(t.delta.is_finite() && (0.0..=0.1).contains(&t.delta)) {
                return Err(bad("total_budget.delta must be in [0, 0.1]".into()));
            }
            let period = match t.period.as_deref() {
                None => candor_store::BudgetPeriod::Month,
                Some(p) => candor_store::BudgetPeriod::parse(p).ok_or_else(|| {
                    bad(format!(
                        "total_budget.period must be day, week or month, not {p:?}"
                    ))
                })?,
            };
            Some(TotalBudget {
                epsilon: t.epsilon,
                delta: t.delta,
                period,
            })
        }
        None => None,
    };
    Ok(InsightsSettings {
        total_budget,
        purpose,
        min_group_size,
        allow_insecure_rng: raw.allow_insecure_rng.unwrap_or(false),
        schema,
        rules,
    })
}

/// One of the fields shipped when the config defines none: (name, label, kind, the
/// purposes that may use it when the catalog has them, aggregate).
struct DefaultField {
    name: &'static str,
    label: &'static str,
    kind: fn() -> FieldKind,
    purposes: &'static [&'static str],
    aggregate: bool,
}

fn listed(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// The fields shipped when the config has no `[[fields]]`: the two declared insight
/// fields Candor always had (`age_band`, `country`) and three a preference center
/// commonly asks for. A purpose the catalog lacks is left out; the aggregate fields
/// also name the insights purpose, whatever it is called.
const DEFAULT_FIELDS: &[DefaultField] = &[
    DefaultField {
        name: "age_band",
        label: "Age band",
        kind: || FieldKind::OneOf {
            values: listed(DEFAULT_DECLARED[0].1),
        },
        purposes: &["personalization"],
        aggregate: true,
    },
    DefaultField {
        name: "country",
        label: "Country",
        kind: || FieldKind::OneOf {
            values: listed(DEFAULT_DECLARED[1].1),
        },
        purposes: &["personalization"],
        aggregate: true,
    },
    DefaultField {
        name: "shoe_size",
        label: "Shoe size (EU)",
        kind: || FieldKind::Integer { min: 16, max: 52 },
        purposes: &["personalization"],
        aggregate: false,
    },
    DefaultField {
        name: "interests",
        label: "Interests",
        kind: || FieldKind::ManyOf {
            values: listed(&[
                "fashion", "sports", "outdoors", "music", "travel", "cooking", "gaming", "tech",
                "books", "fitness",
            ]),
        },
        purposes: &["personalization", "email_marketing"],
        aggregate: false,
    },
    DefaultField {
        name: "birthday_month",
        label: "Birthday month",
        kind: || FieldKind::Month,
        purposes: &["personalization", "email_marketing", "loyalty"],
        aggregate: false,
    },
    // Communication preferences (issue 13, part 2): how and how often the person wants
    // to hear from the operator, as fields like any other.
    DefaultField {
        name: "contact_channels",
        label: "How we may contact you",
        kind: || FieldKind::ManyOf {
            values: listed(&["email", "sms", "push", "post"]),
        },
        purposes: &["email_marketing", "loyalty"],
        aggregate: false,
    },
    DefaultField {
        name: "contact_frequency",
        label: "How often",
        kind: || FieldKind::OneOf {
            values: listed(&["weekly", "monthly", "important news only"]),
        },
        purposes: &["email_marketing", "loyalty"],
        aggregate: false,
    },
];

/// `[[fields]]`, or the defaults, with `[[insights.declared]]` folded in: each declared
/// field is an aggregate one-of field (used by the insights purpose) unless `[[fields]]`
/// defines it, in which case it must be that field, aggregate, with the same values.
/// Without `[[fields]]`, declared fields replace the default aggregate ones, as they
/// replaced the default declared fields before fields existed.
fn field_catalog(
    raw: Option<Vec<RawField>>,
    declared: Option<Vec<RawDeclared>>,
    catalog: &CatalogSpec,
    insights: Option<&PurposeId>,
) -> Result<FieldCatalog, ConfigError> {
    let known = catalog.purpose_ids();
    let bad = |name: &str, m: String| ConfigError::Invalid(format!("fields.{name}: {m}"));
    let name_of =
        |n: &str| FieldName::parse(n).map_err(|e| ConfigError::Invalid(format!("fields: {e}")));
    let spec = |name: FieldName, label: String, kind, purposes, aggregate| {
        let n = name.to_string();
        FieldSpec::new(name, label, kind, purposes, aggregate).map_err(|e| bad(&n, e.to_string()))
    };
    // A declared field as a field: its values, used by the insights purpose.
    let from_declared = |d: RawDeclared| -> Result<FieldSpec, ConfigError> {
        let name = FieldName::parse(&d.field)
            .map_err(|e| ConfigError::Invalid(format!("insights.declared: {e}")))?;
        let label = d.field.replace('_', " ");
        spec(
            name,
            label,
            FieldKind::OneOf { values: d.values },
            insights.into_iter().cloned().collect(),
            insights.is_some(),
        )
    };
    let mut fields: Vec<FieldSpec> = Vec::new();
    match raw {
        None => {
            let declared_given = declared.is_some();
            for d in DEFAULT_FIELDS {
                if d.aggregate && declared_given {
                    continue;
                }
                let mut purposes: Vec<PurposeId> = d
                    .purposes
                    .iter()
                    .filter_map(|p| PurposeId::parse(p).ok())
                    .filter(|p| known.contains(p))
                    .collect();
                let aggregate = d.aggregate && insights.is_some();
                if let Some(i) = insights.filter(|_| aggregate) {
                    if !purposes.contains(i) {
                        purposes.push(i.clone());
                    }
                }
                fields.push(spec(
                    name_of(d.name)?,
                    d.label.to_owned(),
                    (d.kind)(),
                    purposes,
                    aggregate,
                )?);
            }
            for d in declared.into_iter().flatten() {
                fields.push(from_declared(d)?);
            }
        }
        Some(list) => {
            for f in list {
                let name = name_of(&f.name)?;
                let n = f.name.as_str();
                let only = |key: &str, present: bool, kinds: &str| {
                    if present {
                        Err(bad(n, format!("{key} is only for {kinds} fields")))
                    } else {
                        Ok(())
                    }
                };
                let kind = match f.kind.as_str() {
                    "text" => FieldKind::Text {
                        max_len: f.max_length.unwrap_or(100),
                    },
                    "one_of" | "many_of" => {
                        let values = f
                            .values
                            .clone()
                            .ok_or_else(|| bad(n, format!("a {} field needs values", f.kind)))?;
                        if f.kind == "one_of" {
                            FieldKind::OneOf { values }
                        } else {
                            FieldKind::ManyOf { values }
                        }
                    }
                    "integer" => match (f.min, f.max) {
                        (Some(min), Some(max)) => FieldKind::Integer { min, max },
                        _ => return Err(bad(n, "an integer field needs min and max".into())),
                    },
                    "month" => FieldKind::Month,
                    other => {
                        return Err(bad(
                            n,
                            format!(
                            "kind must be text, one_of, many_of, integer or month, not {other:?}"
                        ),
                        ))
                    }
                };
                only(
                    "values",
                    f.values.is_some()
                        && !matches!(kind, FieldKind::OneOf { .. } | FieldKind::ManyOf { .. }),
                    "one_of and many_of",
                )?;
                only(
                    "max_length",
                    f.max_length.is_some() && f.kind != "text",
                    "text",
                )?;
                only(
                    "min and max",
                    (f.min.is_some() || f.max.is_some()) && f.kind != "integer",
                    "integer",
                )?;
                let mut purposes = Vec::new();
                for p in &f.purposes {
                    let id = PurposeId::parse(p).map_err(|e| bad(n, e.to_string()))?;
                    if !known.contains(&id) {
                        return Err(bad(n, format!("{p:?} is not a purpose of the catalog")));
                    }
                    purposes.push(id);
                }
                if f.aggregate {
                    match insights {
                        None => {
                            return Err(bad(
                                n,
                                "aggregate = true, but insights are off (the catalog has no insights purpose)".into(),
                            ))
                        }
                        Some(i) if !purposes.contains(i) => {
                            return Err(bad(
                                n,
                                format!("aggregate = true needs the insights purpose {i:?} among its purposes"),
                            ))
                        }
                        Some(_) => {}
                    }
                }
                fields.push(spec(name, f.label, kind, purposes, f.aggregate)?);
            }
            for d in declared.into_iter().flatten() {
                match fields.iter().find(|f| f.name.as_str() == d.field) {
                    Some(f) if f.aggregate && f.kind.values() == d.values.as_slice() => {}
                    Some(_) => {
                        return Err(ConfigError::Invalid(format!(
                            "insights.declared: {} is also under [[fields]]: make it aggregate = true there, with the same values, and drop it here",
                            d.field
                        )))
                    }
                    None => fields.push(from_declared(d)?),
                }
            }
        }
    }
    FieldCatalog::new(fields).map_err(|e| ConfigError::Invalid(format!("fields: {e}")))
}

fn letters(key: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_owned());
    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(v)
    } else {
        Err(ConfigError::Invalid(format!(
            "iab.{key} must be two upper-case letters, not {v:?}"
        )))
    }
}

/// Fixed, documented demo credentials (printed by `candor serve --demo`).
pub mod demo {
    pub const SERVER_WRITE_KEY: &str = "demo-server-write-key";
    pub const BROWSER_WRITE_KEY: &str = "demo-browser-write-key";
    pub const ADMIN_TOKEN: &str = "demo-admin-token";
    pub const SUBJECT_TOKEN_SECRET: &str = "demo-subject-token-secret";
    /// The demo advertiser's key (`/v1/insights/*` only).
    pub const ADVERTISER_KEY: &str = "cnd_adv_demo-acme-ads-advertiser-key";
}

fn toml_error(path: &str, e: toml::de::Error, src: &str) -> ConfigError {
    // toml reports a byte span; turn it into the line a person can jump to.
    let line = e
        .span()
        .map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1);
    let msg = e.message().trim().to_owned();
    ConfigError::Parse {
        path: path.to_owned(),
        message: match line {
            Some(l) => format!("line {l}: {msg}"),
            None => msg,
        },
    }
}

fn secret(
    key: &str,
    inline: Option<String>,
    env_name: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Sensitive<String>>, ConfigError> {
    match (inline, env_name) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{key}: give either the value or the _env variable, not both"
        ))),
        (Some(v), None) => Ok(Some(Sensitive::new(v))),
        (None, Some(var)) => {
            env(&var)
                .map(|v| Some(Sensitive::new(v)))
                .ok_or(ConfigError::MissingEnv {
                    key: format!("{key}_env"),
                    var,
                })
        }
        (None, None) => Ok(None),
    }
}

/// The shortest secrets accepted (issue 11): every secret in the configuration has a
/// minimum length, so a placeholder like `changeme` cannot go live. Write keys are
/// compared whole in constant time, the admin token guards every operator route, the
/// subject-token secret is an HMAC key (a guessed one mints tokens for anyone).
pub const MIN_WRITE_KEY: usize = 16;
pub const MIN_ADMIN_TOKEN: usize = 16;
pub const MIN_SUBJECT_TOKEN_SECRET: usize = 24;

fn min_length(key: &str, v: &Sensitive<String>, min: usize) -> Result<(), ConfigError> {
    if v.expose().len() < min {
        return Err(ConfigError::Invalid(format!(
            "{key} must be at least {min} characters"
        )));
    }
    Ok(())
}

impl Settings {
    /// Reads the file (if any) over the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        match path {
            Some(p) => {
                let src = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Self::parse(&src, &p.display().to_string(), &env)
            }
            None => Self::parse("", "<defaults>", &env),
        }
    }

    pub fn parse(
        src: &str,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(src).map_err(|e| toml_error(path, e, src))?;
        let default: RawCatalog = toml::from_str(DEFAULT_CATALOG)
            .map_err(|e| toml_error("<built-in catalog>", e, DEFAULT_CATALOG))?;
        // The built-in catalog's language goes with its texts, not with a config
        // that replaces them.
        let language = match (&raw.purposes, raw.notice_language) {
            (Some(_), l) => l.unwrap_or_else(|| "en".to_owned()),
            (None, Some(l)) if l != default.notice_language => {
                return Err(ConfigError::Invalid(format!(
                    "notice_language = {l:?} describes your own [[purposes]]; the built-in catalog is written in {:?}",
                    default.notice_language
                )))
            }
            (None, _) => default.notice_language,
        };
        let catalog = build_catalog(
            &language,
            raw.categories.unwrap_or(default.categories),
            raw.purposes.unwrap_or(default.purposes),
            raw.event_mapping.unwrap_or(default.event_mapping),
        )?;
        let mut sources = Vec::new();
        for s in raw.sources {
            let id = SourceId::parse(&s.id).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            let kind = match s.kind.as_str() {
                "browser" => SourceKind::Browser,
                "server" => SourceKind::Server,
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "source {id}: kind must be \"browser\" or \"server\", not {other:?}"
                    )))
                }
            };
            let key = secret(
                &format!("sources.{id}.write_key"),
                s.write_key,
                s.write_key_env,
                env,
            )?
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "source {id}: write_key or write_key_env is required"
                ))
            })?;
            min_length(&format!("sources.{id}.write_key"), &key, MIN_WRITE_KEY)?;
            if sources
                .iter()
                .any(|o: &SourceSpec| o.id == id || o.write_key.expose() == key.expose())
            {
                return Err(ConfigError::Invalid(format!(
                    "source {id}: duplicate id or write key"
                )));
            }
            sources.push(SourceSpec {
                id,
                kind,
                write_key: key,
            });
        }
        let listen = raw.server.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "server.listen: {listen:?} is not an address like 127.0.0.1:8080"
            ))
        })?;
        let admin_token = secret("admin.token", raw.admin.token, raw.admin.token_env, env)?;
        if let Some(t) = &admin_token {
            min_length("admin.token", t, MIN_ADMIN_TOKEN)?;
        }
        let subject_token_secret = secret(
            "subject_tokens.secret",
            raw.subject_tokens.secret,
            raw.subject_tokens.secret_env,
            env,
        )?;
        if let Some(t) = &subject_token_secret {
            min_length("subject_tokens.secret", t, MIN_SUBJECT_TOKEN_SECRET)?;
        }
        let iab = IabSettings {
            cmp_id: raw.iab.cmp_id.unwrap_or(0),
            cmp_version: raw.iab.cmp_version.unwrap_or(1),
            consent_language: letters("consent_language", raw.iab.consent_language, "EN")?,
            publisher_country_code: letters(
                "publisher_country_code",
                raw.iab.publisher_country_code,
                "AA",
            )?,
            vendor_list: raw.iab.vendor_list,
            demo_vendor_list: false,
            trusted_cmp_ids: raw.iab.trusted_cmp_ids,
        };
        if iab.cmp_id > 4095 || iab.cmp_version > 4095 {
            return Err(ConfigError::Invalid(
                "iab.cmp_id and iab.cmp_version are 12-bit numbers (at most 4095)".into(),
            ));
        }
        let database = match secret("database.url", raw.database.url, raw.database.url_env, env)? {
            None => None,
            Some(url) => {
                if !url.expose().starts_with("postgres://")
                    && !url.expose().starts_with("postgresql://")
                {
                    return Err(ConfigError::Invalid(
                        "database.url must start with postgres://".into(),
                    ));
                }
                let d = DatabaseSettings::new(url.into_inner());
                Some(DatabaseSettings {
                    pool_size: raw.database.pool_size.unwrap_or(d.pool_size).clamp(1, 256),
                    statement_timeout_ms: raw
                        .database
                        .statement_timeout_ms
                        .unwrap_or(d.statement_timeout_ms),
                    connect_timeout_ms: raw
                        .database
                        .connect_timeout_ms
                        .unwrap_or(d.connect_timeout_ms),
                    resync_interval_ms: raw
                        .database
                        .resync_interval_ms
                        .unwrap_or(d.resync_interval_ms)
                        .max(100),
                    url: d.url,
                })
            }
        };
        let insights_purpose = insights_purpose(raw.insights.purpose.as_deref(), &catalog)?;
        let fields = field_catalog(
            raw.fields,
            raw.insights.declared.take(),
            &catalog,
            insights_purpose.as_ref(),
        )?;
        let insights = insights_settings(raw.insights, &catalog, insights_purpose, &fields)?;
        let purposes = catalog.purpose_ids();
        let personalization = program::personalization(raw.personalization, raw.offers, &purposes)?;
        let loyalty = program::loyalty(raw.loyalty, &purposes, &fields)?;
        let email = email::email(raw.email, &purposes, env)?;
        if raw
            .prompt
            .forbidden_wording
            .iter()
            .any(|w| w.trim().is_empty() || w.len() > 200)
        {
            return Err(ConfigError::Invalid(
                "prompt.forbidden_wording: each entry is 1 to 200 bytes".into(),
            ));
        }
        let prompt = PromptSettings {
            gdpr_applies: raw.prompt.gdpr_applies.unwrap_or(true),
            measure: raw.prompt.measure.unwrap_or(true),
            forbidden_wording: raw.prompt.forbidden_wording,
        };
        Ok(Settings {
            prompt,
            limits: limit_settings(raw.limits)?,
            cors_origins: cors_origins(raw.cors)?,
            demo: false,
            response_log: None,
            database,
            iab,
            insights,
            fields,
            personalization,
            loyalty,
            email,
            operator: OperatorInfo {
                name: raw
                    .operator
                    .name
                    .unwrap_or_else(|| "Candor operator".into()),
                policy_url: raw.operator.policy_url.unwrap_or_default(),
                contact: raw.operator.contact.unwrap_or_default(),
                jurisdiction: raw.operator.jurisdiction.unwrap_or_default(),
            },
            listen,
            data_dir: raw.server.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            catalog,
            sources,
            admin_token,
            subject_token_secret,
        })
    }

    /// The demo operator: built-in catalog, fixed credentials.
    pub fn with_demo_credentials(mut self) -> Self {
        use demo::*;
        let src = |id: &str, kind, key: &str| SourceSpec {
            id: SourceId::parse(id).expect("static id"),
            kind,
            write_key: Sensitive::new(key.to_owned()),
        };
        self.sources.retain(|s| {
            s.write_key.expose() != SERVER_WRITE_KEY && s.write_key.expose() != BROWSER_WRITE_KEY
        });
        self.sources
            .push(src("demo_backend", SourceKind::Server, SERVER_WRITE_KEY));
        self.sources
            .push(src("demo_web", SourceKind::Browser, BROWSER_WRITE_KEY));
        self.admin_token = Some(Sensitive::new(ADMIN_TOKEN.into()));
        self.iab.demo_vendor_list = true;
        self.subject_token_secret = Some(Sensitive::new(SUBJECT_TOKEN_SECRET.into()));
        self.demo = true;
        if self.operator.name == "Candor operator" {
            self.operator.name = "Candor Demo Telecom".into();
            self.operator.policy_url = "https://demo.candor.invalid/privacy".into();
        }
        self
    }
}

fn build_catalog(
    language: &str,
    cats: Vec<RawCategory>,
    purposes: Vec<RawPurpose>,
    rules: Vec<RawRule>,
) -> Result<CatalogSpec, ConfigError> {
    let inv = |m: String| ConfigError::Invalid(m);
    let categories = cats
        .into_iter()
        .map(|c| {
            Ok(Category {
                id: CategoryId::parse(&c.id).map_err(|e| inv(e.to_string()))?,
                description: c.description,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let language = Language::parse(language).map_err(|e| inv(format!("notice_language: {e}")))?;
    let mut out = Vec::new();
    for p in purposes {
        let id = PurposeId::parse(&p.id).map_err(|e| inv(e.to_string()))?;
        // The ledger's marker purposes: a configured purpose of the same name could be
        // confused with them in a person's history.
        let reserved = [
            candor_core::ledger::ERASURE_PURPOSE,
            candor_core::ledger::LIST_PURPOSE,
        ];
        if reserved.contains(&id.as_str()) {
            return Err(inv(format!(
                "purpose {id}: the name is reserved for the ledger's own records"
            )));
        }
        if p.notice.trim().is_empty() {
            return Err(inv(format!("purpose {id}: notice text is empty")));
        }
        let mut translations = BTreeMap::new();
        for (tag, t) in p.translations {
            let lang = Language::parse(&tag)
                .map_err(|e| inv(format!("purpose {id}: translations: {e}")))?;
            if lang == language {
                return Err(inv(format!(
                    "purpose {id}: translations.{tag} is the catalog's own language ({language}); put that text in notice"
                )));
            }
            if t.notice.trim().is_empty() || t.title.trim().is_empty() {
                return Err(inv(format!(
                    "purpose {id}: translations.{tag}: title and notice must not be empty"
                )));
            }
            let translation = Translation {
                title: t.title,
                notice: Notice::new(p.notice_version, t.notice),
            };
            if translations.insert(lang, translation).is_some() {
                return Err(inv(format!(
                    "purpose {id}: translations.{tag} is given twice (tags are compared in lower case)"
                )));
            }
        }
        if p.notice_version == 0 {
            return Err(inv(format!("purpose {id}: notice_version starts at 1")));
        }
        out.push(Purpose {
            notice: Notice::new(p.notice_version, p.notice),
            title: p.title,
            categories: p
                .categories
                .iter()
                .map(|c| CategoryId::parse(c).map_err(|e| inv(format!("purpose {id}: {e}"))))
                .collect::<Result<_, _>>()?,
            retention_days: p.retention_days,
            recipients: p.recipients,
            sale_or_sharing: p.sale_or_sharing,
            usnat_opt_outs: match p.usnat_opt_outs {
                Some(fields) => {
                    for f in &fields {
                        if !crate::iab::USNAT_OPT_OUTS.contains(&f.as_str()) {
                            return Err(inv(format!(
                                "purpose {id}: usnat_opt_outs: {f:?} is not one of {:?}",
                                crate::iab::USNAT_OPT_OUTS
                            )));
                        }
                    }
                    fields
                }
                None if p.sale_or_sharing => vec!["SaleOptOut".into(), "SharingOptOut".into()],
                None => Vec::new(),
            },
            tcf_purposes: p.tcf_purposes,
            tcf_special_features: p.tcf_special_features,
            dpv: p.dpv,
            consent_mode: {
                for m in &p.consent_mode {
                    if !CONSENT_MODE_SIGNALS.contains(&m.as_str()) {
                        return Err(inv(format!(
                            "purpose {id}: consent_mode: {m:?} is not one of {CONSENT_MODE_SIGNALS:?}"
                        )));
                    }
                }
                p.consent_mode
            },
            translations,
            bit: 0,
            id,
        });
    }
    let mut rule_list = Vec::new();
    for r in rules {
        let kind = EventKind::parse(&r.kind)
            .ok_or_else(|| inv(format!("event_mapping: unknown type {:?}", r.kind)))?;
        let cat = CategoryId::parse(&r.category).map_err(|e| inv(e.to_string()))?;
        rule_list.push((
            EventRule {
                kind,
                name: r.event,
            },
            cat,
        ));
    }
    let spec = CatalogSpec {
        language,
        purposes: out,
        categories,
        rules: rule_list,
    };
    // Validate the references now, with placeholder bits, so errors show at load time.
    let bits: HashMap<PurposeId, u8> = spec
        .purposes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), (i % 64) as u8))
        .collect();
    spec.build(&bits)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_load() {
        let s = Settings::parse("", "x", &no_env).unwrap();
        assert_eq!(s.catalog.purposes.len(), 5);
        assert!(s.sources.is_empty());
    }

    /// No `[[fields]]`: the default fields, whose aggregate ones are the insights'
    /// declared fields as before.
    #[test]
    fn default_fields_include_the_declared_ones() {
        let s = Settings::parse("", "x", &no_env).unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "age_band",
                "country",
                "shoe_size",
                "interests",
                "birthday_month",
                "contact_channels",
                "contact_frequency"
            ]
        );
        let declared: Vec<&str> = s
            .insights
            .schema
            .declared
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(declared, ["age_band", "country"]);
        let age = s.fields.get("age_band").unwrap();
        assert!(age.aggregate && age.used_by(&PurposeId::parse("ads_insights").unwrap()));
        assert_eq!(s.insights.schema.declared[0].values, age.kind.values());
    }

    /// With no insights purpose in the catalog, the default fields stay but none counts
    /// in aggregate, and a field that asks to is refused.
    #[test]
    fn without_insights_no_field_is_aggregate() {
        let catalog = r#"
[[categories]]
id = "declared_profile"
[[purposes]]
id = "personalization"
title = "P"
notice_version = 1
notice = "N"
categories = ["declared_profile"]
retention_days = 30
sale_or_sharing = false
[[event_mapping]]
type = "identify"
category = "declared_profile"
"#;
        let s = Settings::parse(catalog, "x", &no_env).unwrap();
        assert!(s.insights.purpose.is_none());
        assert_eq!(s.fields.aggregate().count(), 0);
        assert!(s.insights.schema.declared.is_empty());
        let interests = s.fields.get("interests").unwrap();
        assert_eq!(
            interests.purposes,
            [PurposeId::parse("personalization").unwrap()]
        );
        let own = format!("{catalog}[[fields]]\nname = \"size\"\nlabel = \"Size\"\nkind = \"one_of\"\nvalues = [\"s\"]\npurposes = [\"personalization\"]\naggregate = true\n");
        let e = Settings::parse(&own, "x", &no_env).unwrap_err().to_string();
        assert!(e.contains("insights are off"), "{e}");
    }

    /// `[[insights.declared]]` keeps working: without `[[fields]]` it replaces the
    /// default aggregate fields; beside `[[fields]]` it adds a field, or must agree.
    #[test]
    fn declared_insight_fields_become_fields() {
        let declared = "[[insights.declared]]\nfield = \"plan\"\nvalues = [\"free\", \"paid\"]\n";
        let s = Settings::parse(declared, "x", &no_env).unwrap();
        let plan = s.fields.get("plan").unwrap();
        assert!(plan.aggregate);
        assert!(s.fields.get("age_band").is_none() && s.fields.get("shoe_size").is_some());
        assert_eq!(s.insights.schema.declared.len(), 1);

        let own = "[[fields]]\nname = \"size\"\nlabel = \"Size\"\nkind = \"one_of\"\nvalues = [\"s\", \"m\"]\npurposes = [\"personalization\"]\n";
        let s = Settings::parse(&format!("{own}{declared}"), "x", &no_env).unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["size", "plan"]);
        let clash =
            format!("{own}[[insights.declared]]\nfield = \"size\"\nvalues = [\"s\", \"m\"]\n");
        let e = Settings::parse(&clash, "x", &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("also under [[fields]]"), "{e}");
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |body: &str| format!("[[fields]]\nname = \"f\"\nlabel = \"F\"\n{body}\n");
        for (body, says) in [
            ("kind = \"colour\"", "kind must be"),
            ("kind = \"one_of\"", "needs values"),
            ("kind = \"one_of\"\nvalues = []", "values must list"),
            ("kind = \"one_of\"\nvalues = [\"a\", \"a\"]", "values must list"),
            ("kind = \"month\"\nvalues = [\"a\"]", "values is only for"),
            ("kind = \"integer\"\nmin = 1", "needs min and max"),
            ("kind = \"integer\"\nmin = 2\nmax = 1", "min must not exceed max"),
            ("kind = \"text\"\nmin = 2", "min and max is only for"),
            ("kind = \"month\"\npurposes = [\"nope\"]", "not a purpose of the catalog"),
            ("kind = \"many_of\"\nvalues = [\"a\"]\npurposes = [\"ads_insights\"]\naggregate = true", "only for one_of"),
            ("kind = \"one_of\"\nvalues = [\"a\"]\naggregate = true", "needs the insights purpose"),
            ("kind = \"month\"\ncolour = 1", "unknown field"),
        ] {
            let e = Settings::parse(&field(body), "x", &no_env)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{body}: {e}");
        }
        let twice = format!("{}{}", field("kind = \"month\""), field("kind = \"month\""));
        let e = Settings::parse(&twice, "x", &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("defined twice"), "{e}");
        let e = Settings::parse(
            "[[fields]]\nname = \"Shoe Size\"\nlabel = \"F\"\nkind = \"month\"\n",
            "x",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field name"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let src = "[operator]\nname = \"x\"\n\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n";
        let e = Settings::parse(src, "op.toml", &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen") && e.contains("line 6"), "{e}");
    }

    /// `[insights] categories` replaces the built-in list; names are checked.
    #[test]
    fn insight_categories_come_from_the_config() {
        let s = Settings::parse("", "x", &no_env).unwrap();
        assert_eq!(
            s.insights.schema.categories.len(),
            candor_insights::features::DEFAULT_CATEGORIES.len()
        );
        let own = "[insights]\ncategories = [\"Shoes\", \"bags\"]\n";
        let s = Settings::parse(own, "x", &no_env).unwrap();
        let names: Vec<&str> = s
            .insights
            .schema
            .categories
            .iter()
            .map(|c| c.as_str())
            .collect();
        assert_eq!(names, ["bags", "shoes"]);
        for (bad, says) in [
            ("categories = [\"no spaces\"]", "not a category name"),
            ("categories = []", "categories must list"),
            ("categories = [\"a\", \"A\"]", "categories must list"),
        ] {
            let e = Settings::parse(&format!("[insights]\n{bad}\n"), "x", &no_env)
                .unwrap_err()
                .to_string();
            assert!(e.contains("insights.") && e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_from_env() {
        let src = "[[sources]]\nid = \"web\"\nkind = \"server\"\nwrite_key_env = \"WK\"\n";
        let env = |k: &str| (k == "WK").then(|| "abcdefghijklmnop".to_string());
        let s = Settings::parse(src, "x", &env).unwrap();
        assert_eq!(s.sources[0].write_key.expose(), "abcdefghijklmnop");
        let e = Settings::parse(src, "x", &no_env).unwrap_err().to_string();
        assert!(e.contains("WK"), "{e}");
    }

    /// Every secret has a minimum length (issue 11): a placeholder cannot go live.
    #[test]
    fn short_secrets_are_refused() {
        for (src, key) in [
            (
                "[[sources]]\nid = \"web\"\nkind = \"browser\"\nwrite_key = \"abcdefghij\"\n",
                "sources.web.write_key",
            ),
            ("[admin]\ntoken = \"changeme\"\n", "admin.token"),
            (
                "[subject_tokens]\nsecret = \"abcdefghijklmnop\"\n",
                "subject_tokens.secret",
            ),
        ] {
            let e = Settings::parse(src, "x", &no_env).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("at least"), "{e}");
        }
        let e = Settings::parse("[limits]\nmax_connections = 0\n", "x", &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_connections"), "{e}");
    }

    #[test]
    fn bad_catalog_reference_is_rejected() {
        let src = r#"
[[categories]]
id = "a"
[[purposes]]
id = "p"
title = "P"
notice_version = 1
notice = "n"
categories = ["b"]
retention_days = 1
sale_or_sharing = false
"#;
        let e = Settings::parse(src, "x", &no_env).unwrap_err().to_string();
        assert!(e.contains("unknown data category b"), "{e}");
    }
}
