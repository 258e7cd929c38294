//! Storage errors. The server maps each to a stable API error code in its one table.

use crate::types::BudgetLimit;
use crate::types::Spend;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    /// PostgreSQL aborted the transaction to break a deadlock or a serialization
    /// conflict: nothing of it was applied, and running it again is safe. The store
    /// retries such transactions itself (`postgres::retrying`); this reaches a caller
    /// only when every attempt was aborted.
    #[error("the database aborted a conflicting transaction: {0}")]
    Contention(String),
    #[error("cannot withdraw {purpose}: consent is not currently given")]
    NotGiven { purpose: String },
    #[error("subject not found")]
    UnknownSubject,
    /// An erasure `only_if_abandoned` found something of the subject's that is not
    /// abandoned (a subscription, consent, an account): nothing was applied.
    #[error("the subject holds more than an expired request")]
    NotAbandoned,
    /// A confirmation for a subscription that is not waiting for one (the person left
    /// the list, or the request expired): nothing was applied.
    #[error("the subscription to {list} is not waiting for a confirmation")]
    NotPending { list: String },
    /// The subject holds identifiers the credential does not speak for (a browser key
    /// reaching a subject linked to a user id): nothing was applied.
    #[error("the credential does not speak for every identifier of this subject")]
    NotYours,
    #[error("the data directory is in use by another Candor process ({0})")]
    Locked(String),
    #[error("the database schema is version {found}, newer than this binary supports ({supported}); upgrade Candor")]
    SchemaTooNew { found: i64, supported: i64 },
    /// The database was first opened with another master key: refusing to open it
    /// rather than writing what nobody could read back.
    #[error("{0}")]
    KeyMismatch(String),
    /// The receipt-signing key is not the one the database's key ring says is current.
    #[error("the receipt-signing key is {found}, but this database's current signing key is {expected}: restore keys/receipt-signing.key (or CANDOR_SIGNING_KEY) of that key, or finish a rotation with `candor keys rotate-signing`; refusing to start rather than sign with a key nobody can verify")]
    SigningKeyMismatch {
        expected: candor_core::ledger::KeyId,
        found: candor_core::ledger::KeyId,
    },
    /// An operation that makes no sense in the database's state (it says why).
    #[error("{0}")]
    Refused(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    /// Charging the report would exceed one of the budgets it is charged against
    /// (`limit` says which) in ε or δ; nothing was charged. `spent` is what that budget
    /// had used before.
    #[error("the {} would be exceeded", limit.describe())]
    Overspend {
        limit: BudgetLimit,
        budget: Spend,
        spent: Spend,
    },
    /// No such advertiser, or it is disabled.
    #[error("unknown or disabled advertiser")]
    UnknownAdvertiser,
    /// An advertiser with this id already exists (create only).
    #[error("an advertiser with this id already exists")]
    AdvertiserExists,
    /// The advertiser changed (or vanished) since it was read; nothing was written
    /// (see `Store::replace_advertiser`).
    #[error("the advertiser changed since it was read")]
    AdvertiserChanged,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Whether PostgreSQL aborted the transaction to break a deadlock or a serialization
/// conflict (see `StoreError::Contention`).
pub(crate) fn is_contention(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let text = crate::postgres::describe_error(&e);
        if is_contention(&e) {
            StoreError::Contention(text)
        } else {
            StoreError::Database(text)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Database(format!("connection pool: {other}")),
        }
    }
}
