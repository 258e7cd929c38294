//! Ledger verification over a store: read every record in order and hand them to the
//! core verifier, under the key ring the store records, checked to end at the key the
//! verifier holds. Shared by `candor ledger verify` and the admin API.

use candor_core::ledger::{verify_chain, ChainFault, RingFault};
use candor_store::{Store, StoreError};
use ed25519_dalek::VerifyingKey;
use std::fmt;

/// Why a ledger does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerFault {
    /// The recorded key ring is not certified down to the current key.
    Ring(RingFault),
    Chain(ChainFault),
}

impl fmt::Display for LedgerFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerFault::Ring(r) => write!(f, "the signing key ring is not trustworthy: {r}"),
            LedgerFault::Chain(c) => c.fmt(f),
        }
    }
}

/// `Ok(Ok(n))`: n records verified. `Ok(Err(fault))`: the first fault found.
pub async fn verify(
    store: &dyn Store,
    current: &VerifyingKey,
) -> Result<Result<u64, LedgerFault>, StoreError> {
    let ring = store.signing_keys().await?;
    if let Err(e) = ring.check(current) {
        return Ok(Err(LedgerFault::Ring(e)));
    }
    let head = store.ledger_head().await?;
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let page = store.ledger_page(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.entry.seq;
        all.extend(page);
    }
    Ok(verify_chain(&all, head, &ring).map_err(LedgerFault::Chain))
}
