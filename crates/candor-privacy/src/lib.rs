//! Candor's differential-privacy engine, as a pure library (no I/O, no HTTP, no SQL).
//!
//! An advertiser's insight query flows through these modules in order:
//!
//! ```text
//! rows ──► bounds     (clamp values, keep at most k groups per subject, chosen by a keyed hash)
//!      ──► query      (aggregate per group, split epsilon, pick mechanisms)
//!      ──► partition  (private group keys: noisy count ≥ threshold, OpenDP's noise-threshold measurement)
//!      ──► mechanism  (discrete Laplace noise via OpenDP's exact CKS20 sampler, 95% intervals)
//!      ──► Answer     (value, noise scale, 95% interval per group; what was suppressed; cost)
//! budget: every query is charged (atomically) *before* it is answered; overspending is refused.
//! ```
//!
//! **Neighbouring relation.** Everywhere in this crate, two datasets are neighbours when
//! one is the other plus or minus *all* rows of one subject (unbounded DP at the subject
//! level). Contribution bounding (`bounds`) is what makes the sensitivities finite.
//!
//! **Randomness.** All noise comes from OpenDP's samplers, which take their bits from
//! OpenSSL (`RAND_priv_bytes`) only when this crate's `secure-rng` feature is on; see
//! [`RNG_IS_CRYPTOGRAPHICALLY_SECURE`]. A production server must refuse to answer
//! advertisers when it is `false`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bounds;
pub mod budget;
pub mod mechanism;
pub mod partition;
pub mod query;

pub use budget::{Accountant, Budget, InvalidBudget, Overspend, Receipt};
pub use query::{
    Aggregate, Answer, GroupAnswer, GroupKey, Query, QueryError, Row, Subject, Suppressed,
};

/// Whether OpenDP was built with `use-openssl` (our `secure-rng` feature), i.e. whether
/// its noise comes from a source OpenDP vouches for as cryptographically secure.
pub const RNG_IS_CRYPTOGRAPHICALLY_SECURE: bool = cfg!(feature = "secure-rng");

/// Fills `buf` with random bytes from the same source as OpenDP's noise.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), mechanism::NoiseError> {
    opendp::traits::samplers::fill_bytes(buf).map_err(|e| mechanism::NoiseError::Rng(e.to_string()))
}
