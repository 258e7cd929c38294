//! Running a transaction again when the database aborted it to resolve contention, and
//! answering every job of a failed group with the same error.

use crate::StoreError;

/// Attempts of a transaction the database aborts to break a deadlock or a serialization
/// conflict, before the error reaches the caller.
pub(crate) const ATTEMPTS: usize = 5;

/// Waits before attempt `attempt` (2, 3, ...) of an aborted transaction: 20 ms, 40 ms,
/// 80 ms ... with up to half again at random. Why wait at all: the transaction that won
/// the deadlock was woken by our abort and still has to be scheduled to take the lock it
/// waited for; a rerun that starts at once can take that lock first and close the same
/// cycle again, attempt after attempt (seen on a loaded 2-core machine). The random part
/// keeps two losers from coming back in step.
pub(crate) async fn back_off(attempt: usize) {
    let base = 20u64 << attempt.saturating_sub(2).min(6);
    // The clock's nanoseconds are random enough to spread two reruns apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let jitter = nanos % (base / 2 + 1);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

/// Runs `f`, one whole transaction, again when the database aborted it for contention
/// (`StoreError::Contention`): everything it did was rolled back, so a rerun is exact.
/// Deadlocks are rare but possible on PostgreSQL (a withdrawal deleting a subject's
/// feature rows while a retention pass deletes old ones in another order; two groups
/// linking the same new identifiers in opposite orders), and the request that lost one
/// should not fail.
pub(crate) async fn retrying<T, Fut>(
    what: &'static str,
    mut f: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(StoreError::Contention(m)) if attempt < ATTEMPTS => {
                tracing::warn!(transaction = what, attempt, error = %m,
                    "aborted by the database to resolve contention; running it again");
                attempt += 1;
                back_off(attempt).await;
            }
            other => return other,
        }
    }
}

/// The same failure for every job of a failed group (errors are not `Clone`).
pub(crate) fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Closed => StoreError::Closed,
        StoreError::Contention(m) => StoreError::Contention(m.clone()),
        StoreError::Database(m) => StoreError::Database(m.clone()),
        other => StoreError::Database(other.to_string()),
    }
}
