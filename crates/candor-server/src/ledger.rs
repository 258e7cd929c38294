//! Ledger verification over a store: read every record in order and hand them to the
//! core verifier. Shared by `candor ledger verify` and the admin API.

use candor_core::ledger::{verify_chain, ChainFault};
use candor_store::{Store, StoreError};
use ed25519_dalek::VerifyingKey;

/// `Ok(Ok(n))`: n records verified. `Ok(Err(fault))`: the first fault found.
pub async fn verify(
    store: &dyn Store,
    key: &VerifyingKey,
) -> Result<Result<u64, ChainFault>, StoreError> {
    let head = store.ledger_head().await?;
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let page = store.ledger_page(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.entry.seq;
        all.extend(page);
    }
    Ok(verify_chain(&all, head, key))
}
