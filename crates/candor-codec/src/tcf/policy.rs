//! TCF v2.2 policy checks.
//!
//! A decoder must still read strings made under older or sloppier CMPs, so
//! problems are warnings there; what we *write* must be compliant, so the
//! encoder turns the same findings into errors.

use ::core::fmt;

use super::{RestrictionType, TcModel};

/// Policy version that TCF 2.2 strings carry (and the lowest we accept).
pub const MIN_POLICY_VERSION: u8 = 4;

/// Purposes that may not be processed on legitimate interest: 3-6 since TCF
/// 2.2, and purpose 1 (storage/access) has been consent-only since TCF 2.0.
pub const NO_LEGITIMATE_INTEREST_PURPOSES: [u8; 5] = [1, 3, 4, 5, 6];

/// One way a model breaks the TCF v2.2 policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// `TcfPolicyVersion` below [`MIN_POLICY_VERSION`].
    PolicyVersionTooLow {
        /// The version found.
        found: u8,
    },
    /// Legitimate interest signalled for a purpose that cannot use it.
    PurposeLegitimateInterest {
        /// The purpose.
        purpose: u8,
    },
    /// The publisher claims legitimate interest for such a purpose.
    PublisherLegitimateInterest {
        /// The purpose.
        purpose: u8,
    },
    /// A publisher restriction requiring legitimate interest for such a purpose.
    LegitimateInterestRestriction {
        /// The purpose.
        purpose: u8,
    },
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PolicyVersionTooLow { found } => write!(
                f,
                "TCF policy version {found} is below {MIN_POLICY_VERSION} (TCF v2.2)"
            ),
            Self::PurposeLegitimateInterest { purpose } => {
                write!(
                    f,
                    "legitimate interest is not allowed for purpose {purpose}"
                )
            }
            Self::PublisherLegitimateInterest { purpose } => write!(
                f,
                "publisher legitimate interest is not allowed for purpose {purpose}"
            ),
            Self::LegitimateInterestRestriction { purpose } => write!(
                f,
                "a publisher restriction requires legitimate interest for purpose {purpose}"
            ),
        }
    }
}

/// All violations in `m`, in field order.
pub(super) fn check(m: &TcModel) -> Vec<PolicyViolation> {
    let mut out = Vec::new();
    if m.policy_version < MIN_POLICY_VERSION {
        out.push(PolicyViolation::PolicyVersionTooLow {
            found: m.policy_version,
        });
    }
    for purpose in NO_LEGITIMATE_INTEREST_PURPOSES {
        if m.purpose_legitimate_interests.contains(purpose) {
            out.push(PolicyViolation::PurposeLegitimateInterest { purpose });
        }
    }
    for r in &m.publisher_restrictions {
        if r.restriction_type == RestrictionType::RequireLegitimateInterest
            && NO_LEGITIMATE_INTEREST_PURPOSES.contains(&r.purpose_id)
        {
            out.push(PolicyViolation::LegitimateInterestRestriction {
                purpose: r.purpose_id,
            });
        }
    }
    if let Some(p) = &m.publisher_tc {
        for purpose in NO_LEGITIMATE_INTEREST_PURPOSES {
            if p.legitimate_interests.contains(purpose) {
                out.push(PolicyViolation::PublisherLegitimateInterest { purpose });
            }
        }
    }
    out
}
