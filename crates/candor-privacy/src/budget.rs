//! Privacy-budget accounting: each advertiser has an (epsilon, delta) budget per period,
//! and every query is charged *before* it is answered.
//!
//! **Guarantees.**
//! - `try_charge` is atomic: the check and the update happen under one `Mutex`, so no
//!   interleaving of concurrent queries can make the total spent exceed the budget.
//! - A charge that would overspend either component is refused and charges nothing.
//! - The running total is an *upper bound* on the exact real sum of the charges: each
//!   floating-point addition is checked for rounding error (TwoSum, Knuth TAOCP vol. 2,
//!   §4.2.2) and, when it rounded down, moved up one ulp. So rounding can only make the
//!   accountant refuse slightly early, never let it overspend.
//!
//! **Assumption.** Composition is *basic* (sequential) composition for approximate DP:
//! spending (ε₁, δ₁) then (ε₂, δ₂) costs (ε₁+ε₂, δ₁+δ₂) (Dwork & Roth 2014, Thm 3.16).
//! Tighter accounting (zCDP / advanced composition) is future work; basic composition is
//! always valid, only pessimistic.
//!
//! A `std::sync::Mutex` (not an async one) is right: the critical section is a few
//! float operations and never awaits. A poisoned lock is treated as exhausted (fail closed).

use std::sync::Mutex;

/// An (epsilon, delta) pair: a budget, a cost, or an amount spent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub epsilon: f64,
    pub delta: f64,
}

impl Budget {
    /// Parses a budget: epsilon finite and ≥ 0, delta in [0, 1).
    pub fn new(epsilon: f64, delta: f64) -> Result<Self, InvalidBudget> {
        if !(epsilon.is_finite() && epsilon >= 0.0) {
            return Err(InvalidBudget::Epsilon(epsilon));
        }
        if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
            return Err(InvalidBudget::Delta(delta));
        }
        Ok(Self { epsilon, delta })
    }

    pub const ZERO: Budget = Budget {
        epsilon: 0.0,
        delta: 0.0,
    };
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBudget {
    #[error("epsilon must be finite and non-negative, got {0}")]
    Epsilon(f64),
    #[error("delta must be in [0, 1), got {0}")]
    Delta(f64),
}

/// Proof that a charge was made; answers carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// 1, 2, 3… in the order charges were accepted by this accountant.
    pub sequence: u64,
    pub charged: Budget,
    /// Upper bound on the total spent after this charge.
    pub spent_after: Budget,
    pub total: Budget,
}

/// A refused charge; nothing was spent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("privacy budget exceeded: requested (ε={}, δ={}), remaining (ε={}, δ={})",
    .requested.epsilon, .requested.delta, .remaining.epsilon, .remaining.delta)]
pub struct Overspend {
    pub requested: Budget,
    pub remaining: Budget,
}

/// One advertiser's budget for one period.
#[derive(Debug)]
pub struct Accountant {
    total: Budget,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    spent: Budget,
    sequence: u64,
}

impl Accountant {
    pub fn new(total: Budget) -> Self {
        Self {
            total,
            state: Mutex::new(State {
                spent: Budget::ZERO,
                sequence: 0,
            }),
        }
    }

    pub fn total(&self) -> Budget {
        self.total
    }

    /// Upper bound on what has been spent so far (the full budget if the lock is poisoned).
    pub fn spent(&self) -> Budget {
        match self.state.lock() {
            Ok(s) => s.spent,
            Err(_) => self.total,
        }
    }

    /// Charges `cost` if, and only if, it fits in what remains; atomically.
    pub fn try_charge(&self, cost: Budget) -> Result<Receipt, Overspend> {
        let refuse = |remaining| Overspend {
            requested: cost,
            remaining,
        };
        // A cost that is not a valid budget (NaN, negative) is refused: it could otherwise
        // "refund" budget.
        if Budget::new(cost.epsilon, cost.delta).is_err() {
            return Err(refuse(Budget::ZERO));
        }
        let Ok(mut state) = self.state.lock() else {
            return Err(refuse(Budget::ZERO));
        };
        let epsilon = add_round_up(state.spent.epsilon, cost.epsilon);
        let delta = add_round_up(state.spent.delta, cost.delta);
        if epsilon > self.total.epsilon || delta > self.total.delta {
            let remaining = Budget {
                epsilon: (self.total.epsilon - state.spent.epsilon).max(0.0),
                delta: (self.total.delta - state.spent.delta).max(0.0),
            };
            return Err(refuse(remaining));
        }
        state.spent = Budget { epsilon, delta };
        state.sequence += 1;
        Ok(Receipt {
            sequence: state.sequence,
            charged: cost,
            spent_after: state.spent,
            total: self.total,
        })
    }
}

/// `a + b` rounded towards +∞ (for finite, non-negative `a`, `b`).
///
/// TwoSum (Knuth; Møller 1965) gives the exact rounding error `err` of `s = fl(a + b)`:
/// `a + b = s + err` exactly. If `err > 0` the true sum is above `s`, so step up one ulp.
fn add_round_up(a: f64, b: f64) -> f64 {
    let s = a + b;
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    if err > 0.0 {
        next_up(s)
    } else {
        s
    }
}

/// The next representable f64 above a finite non-negative `x` (`f64::next_up` needs Rust 1.86;
/// the workspace's MSRV is 1.85).
fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        f64::from_bits(1)
    } else {
        f64::from_bits(x.to_bits() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn refuses_overspend_and_charges_nothing() {
        let acc = Accountant::new(Budget::new(1.0, 1e-6).unwrap());
        acc.try_charge(Budget::new(0.75, 0.0).unwrap()).unwrap();
        let before = acc.spent();
        let err = acc.try_charge(Budget::new(0.5, 0.0).unwrap()).unwrap_err();
        assert_eq!(err.remaining.epsilon, 0.25);
        assert_eq!(acc.spent(), before);
        // delta is a separate limit
        assert!(acc.try_charge(Budget::new(0.1, 2e-6).unwrap()).is_err());
        assert_eq!(acc.spent(), before);
        let r = acc.try_charge(Budget::new(0.25, 1e-6).unwrap()).unwrap();
        assert_eq!(r.sequence, 2);
        assert_eq!(
            r.spent_after,
            Budget {
                epsilon: 1.0,
                delta: 1e-6
            }
        );
    }

    #[test]
    fn refuses_invalid_costs() {
        let acc = Accountant::new(Budget::new(1.0, 0.0).unwrap());
        for bad in [
            Budget {
                epsilon: -0.5,
                delta: 0.0,
            },
            Budget {
                epsilon: f64::NAN,
                delta: 0.0,
            },
            Budget {
                epsilon: 0.1,
                delta: -1.0,
            },
        ] {
            assert!(acc.try_charge(bad).is_err());
        }
        assert_eq!(acc.spent(), Budget::ZERO);
    }

    #[test]
    fn rounding_never_undercounts() {
        // 0.1 is not representable; ten charges of 0.1 must not be allowed to sneak past 1.0
        // through downward rounding, and the recorded total must be ≥ the exact sum.
        let acc = Accountant::new(Budget::new(1.0, 0.0).unwrap());
        let mut ok = 0;
        for _ in 0..20 {
            if acc.try_charge(Budget::new(0.1, 0.0).unwrap()).is_ok() {
                ok += 1;
            }
        }
        assert!(ok <= 10, "{ok}");
        assert!(acc.spent().epsilon <= 1.0);
        // exact binary fractions are not penalised
        let acc = Accountant::new(Budget::new(1.0, 0.0).unwrap());
        for _ in 0..8 {
            acc.try_charge(Budget::new(0.125, 0.0).unwrap()).unwrap();
        }
        assert_eq!(acc.spent().epsilon, 1.0);
        assert_eq!(add_round_up(1.0, 1e-17), next_up(1.0));
    }

    #[test]
    fn concurrent_charges_never_overspend() {
        // 16 threads race 500 charges each against a budget that fits exactly 1024 of them
        // (2^-10 is exact in binary, so exactly 1024 must succeed), and 300 that fit in delta.
        for (cost, total, expect) in [
            (
                Budget {
                    epsilon: 1.0 / 1024.0,
                    delta: 0.0,
                },
                Budget {
                    epsilon: 1.0,
                    delta: 0.0,
                },
                Some(1024u64),
            ),
            (
                Budget {
                    epsilon: 0.003,
                    delta: 1e-9,
                },
                Budget {
                    epsilon: 10.0,
                    delta: 3e-7,
                },
                None,
            ),
        ] {
            let acc = Arc::new(Accountant::new(total));
            let ok = Arc::new(AtomicU64::new(0));
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let (acc, ok) = (Arc::clone(&acc), Arc::clone(&ok));
                    std::thread::spawn(move || {
                        for _ in 0..500 {
                            if acc.try_charge(cost).is_ok() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let spent = acc.spent();
            let n = ok.load(Ordering::Relaxed);
            assert!(
                spent.epsilon <= total.epsilon && spent.delta <= total.delta,
                "{spent:?}"
            );
            // what was recorded covers every accepted charge
            assert!(spent.epsilon >= cost.epsilon * n as f64 * (1.0 - 1e-12));
            assert!(n as f64 * cost.delta <= total.delta * (1.0 + 1e-12));
            if let Some(e) = expect {
                assert_eq!(n, e);
            } else {
                assert!((290..=300).contains(&n), "{n}");
            }
        }
    }
}
