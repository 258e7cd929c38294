//! Advertisers as both backends write them: how a row is written in each mode and the
//! values it is written with, defined once.

use crate::types::Advertiser;
use crate::StoreError;

/// How an advertiser row is written: a create must report a taken id instead of
/// overwriting it, and a change must not overwrite a concurrent one.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PutMode {
    /// Insert only; `AdvertiserExists` if the id is taken.
    Create,
    /// Insert or replace, unconditionally (the demo, tests).
    Upsert,
    /// Replace an existing row whose `updated_ms` is this; `AdvertiserChanged` if none.
    Replace(i64),
}

/// The statement writing an advertiser in `mode`: `$1`..`$13` are the values of
/// [`advertiser_values`] in `rows::ADVERTISER_COLS` order, `$14` the expected
/// `updated_ms` of `Replace`.
pub(crate) fn write_sql(mode: PutMode) -> &'static str {
    match mode {
        PutMode::Replace(_) => {
            // `advertiser_id = $1` first, though unchanged: SQLite numbers placeholders
            // by first appearance (see `statements`).
            "UPDATE advertisers SET advertiser_id = $1, name = $2, key_hash = $3,
               budget_epsilon_nano = $4,
               budget_delta_atto = $5, period = $6, allowed_features = $7,
               allowed_dimensions = $8, disabled = $9, created_ms = $10, updated_ms = $11,
               lifetime_epsilon_nano = $12, lifetime_delta_atto = $13
             WHERE advertiser_id = $1 AND updated_ms = $14"
        }
        PutMode::Create => {
            "INSERT INTO advertisers (advertiser_id, name, key_hash, budget_epsilon_nano,
               budget_delta_atto, period, allowed_features, allowed_dimensions, disabled,
               created_ms, updated_ms, lifetime_epsilon_nano, lifetime_delta_atto)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (advertiser_id) DO NOTHING"
        }
        PutMode::Upsert => {
            "INSERT INTO advertisers (advertiser_id, name, key_hash, budget_epsilon_nano,
               budget_delta_atto, period, allowed_features, allowed_dimensions, disabled,
               created_ms, updated_ms, lifetime_epsilon_nano, lifetime_delta_atto)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (advertiser_id) DO UPDATE SET
               name = excluded.name, key_hash = excluded.key_hash,
               budget_epsilon_nano = excluded.budget_epsilon_nano,
               budget_delta_atto = excluded.budget_delta_atto, period = excluded.period,
               allowed_features = excluded.allowed_features,
               allowed_dimensions = excluded.allowed_dimensions, disabled = excluded.disabled,
               created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
               lifetime_epsilon_nano = excluded.lifetime_epsilon_nano,
               lifetime_delta_atto = excluded.lifetime_delta_atto"
        }
    }
}

/// The error for a write of `mode` that changed no row.
pub(crate) fn unwritten(mode: PutMode) -> StoreError {
    match mode {
        PutMode::Replace(_) => StoreError::AdvertiserChanged,
        PutMode::Create | PutMode::Upsert => StoreError::AdvertiserExists,
    }
}

/// The columns that are not stored as they are held: the key hash as bytes, permission
/// lists as JSON arrays.
pub(crate) struct Encoded {
    pub key: Vec<u8>,
    pub period: &'static str,
    pub features: String,
    pub dimensions: String,
    /// The lifetime cap's two columns (both NULL without one).
    pub lifetime_epsilon: Option<i64>,
    pub lifetime_delta: Option<i64>,
}

impl Encoded {
    pub fn of(a: &Advertiser) -> Result<Self, StoreError> {
        let json = |names: &[String]| {
            serde_json::to_string(names).map_err(|e| StoreError::Database(e.to_string()))
        };
        Ok(Self {
            key: a.key_hash.to_vec(),
            period: a.period.as_str(),
            features: json(&a.allowed_features)?,
            dimensions: json(&a.allowed_dimensions)?,
            lifetime_epsilon: a.lifetime.map(|l| l.epsilon_nano),
            lifetime_delta: a.lifetime.map(|l| l.delta_atto),
        })
    }
}

/// The parameters of [`write_sql`] (`$1`..`$13`, then `$14` for `Replace`) as a vector
/// of the backend's parameter trait objects: `advertiser_values!(a, enc, mode, dyn
/// ToSql)`.
macro_rules! advertiser_values {
    ($a:expr, $enc:expr, $expected:expr, $t:ty) => {{
        let mut v: Vec<&$t> = vec![
            &$a.id,
            &$a.name,
            &$enc.key,
            &$a.budget.epsilon_nano,
            &$a.budget.delta_atto,
            &$enc.period,
            &$enc.features,
            &$enc.dimensions,
            &$a.disabled,
            &$a.created_ms.0,
            &$a.updated_ms.0,
            &$enc.lifetime_epsilon,
            &$enc.lifetime_delta,
        ];
        if let Some(e) = $expected {
            v.push(e);
        }
        v
    }};
}
pub(crate) use advertiser_values;

impl PutMode {
    /// The expected `updated_ms` of a compare-and-set write.
    pub fn expected(&self) -> Option<&i64> {
        match self {
            PutMode::Replace(e) => Some(e),
            PutMode::Create | PutMode::Upsert => None,
        }
    }
}
