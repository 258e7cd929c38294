//! What a points transaction means, decided once for both backends (issue 14).
//!
//! A backend locks the subject's account (the single writer on SQLite, the account row
//! `FOR UPDATE` on PostgreSQL), reads [`State`] and asks [`decide`]. Because every
//! transaction of a subject is decided under that lock from what is committed, two
//! concurrent redemptions cannot both spend the same points, a key applied twice is
//! found the second time, and caps count what was really earned.
//!
//! The rules: a key seen before answers with its original transaction (a different
//! kind under the same key is a conflict, never a second transaction); earning and
//! redeeming need the program's purpose granted now; earning is clamped by the rule's
//! caps and refused when nothing is left; no transaction drives a balance or a stock
//! below zero; a redemption is reversed at most once.

use crate::loyalty::{LoyaltyChange, LoyaltyOp, Refusal, Txn, TxnKind};

/// What the decision reads, under the account's lock.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// The transaction stored under the op's key, if any.
    pub existing: Option<Txn>,
    /// Whether the subject exists at all.
    pub subject_known: bool,
    /// Whether the program's purpose is granted now.
    pub granted: bool,
    pub balance: i64,
    /// Earn: points the rule gave this subject on the op's UTC day, and in all.
    pub rule_today: i64,
    pub rule_total: i64,
    /// Redeem: the reward's stock (`None`: unlimited). Reverse: the same for the
    /// reversed redemption's reward.
    pub stock: Option<i64>,
    /// Reverse: the redemption, and whether it was reversed before.
    pub redemption: Option<Txn>,
    pub reversed: bool,
}

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apply {
    pub kind: TxnKind,
    /// Signed change to the balance.
    pub points: i64,
    pub rule: Option<String>,
    pub reward: Option<String>,
    pub reverses: Option<i64>,
    /// Change to the reward's stock (only for rewards with a stock row).
    pub stock_delta: i64,
    /// The account's membership after it.
    pub member: bool,
}

/// Either the earlier transaction under this key, what to write, or why nothing is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Duplicate(Txn),
    Apply(Apply),
    Refuse(Refusal),
}

/// Points still allowed under the caps (never negative).
pub fn room(points: i64, today: i64, total: i64, per_day: Option<i64>, all: Option<i64>) -> i64 {
    let mut p = points.max(0);
    if let Some(c) = per_day {
        p = p.min((c - today).max(0));
    }
    if let Some(c) = all {
        p = p.min((c - total).max(0));
    }
    p
}

/// Whether a stored transaction is the one `what` asks for: the same kind, rule, reward
/// or reversed redemption. (Not the same points: an earning is clamped by caps, so its
/// stored points may be fewer than asked.)
fn same(t: &Txn, what: &LoyaltyChange) -> bool {
    t.kind == what.kind()
        && match what {
            LoyaltyChange::Earn { rule, .. } => t.rule.as_deref() == Some(rule),
            LoyaltyChange::Redeem { reward, .. } => t.reward.as_deref() == Some(reward),
            LoyaltyChange::Reverse { txn } => t.reverses == Some(*txn),
            LoyaltyChange::Adjust { points } => t.points == *points,
            LoyaltyChange::Expire { .. } | LoyaltyChange::Leave { .. } => true,
        }
}

pub fn decide(op: &LoyaltyOp, s: &State) -> Decision {
    if let Some(t) = &s.existing {
        return if same(t, &op.what) {
            Decision::Duplicate(t.clone())
        } else {
            Decision::Refuse(Refusal::KeyConflict)
        };
    }
    if !s.subject_known {
        return Decision::Refuse(Refusal::UnknownSubject);
    }
    let apply = |kind, points, member| Apply {
        kind,
        points,
        rule: None,
        reward: None,
        reverses: None,
        stock_delta: 0,
        member,
    };
    match &op.what {
        LoyaltyChange::Earn {
            rule,
            points,
            cap_per_day,
            cap_total,
        } => {
            if !s.granted {
                return Decision::Refuse(Refusal::NotGranted);
            }
            let p = room(
                *points,
                s.rule_today,
                s.rule_total,
                *cap_per_day,
                *cap_total,
            );
            if p == 0 {
                return Decision::Refuse(Refusal::Capped);
            }
            Decision::Apply(Apply {
                rule: Some(rule.clone()),
                ..apply(TxnKind::Earn, p, true)
            })
        }
        LoyaltyChange::Redeem { reward, cost } => {
            if !s.granted {
                return Decision::Refuse(Refusal::NotGranted);
            }
            if *cost <= 0 || s.balance < *cost {
                return Decision::Refuse(Refusal::InsufficientPoints {
                    balance: s.balance,
                    needed: *cost,
                });
            }
            if s.stock.is_some_and(|n| n <= 0) {
                return Decision::Refuse(Refusal::OutOfStock);
            }
            Decision::Apply(Apply {
                reward: Some(reward.clone()),
                stock_delta: if s.stock.is_some() { -1 } else { 0 },
                ..apply(TxnKind::Redeem, -cost, true)
            })
        }
        LoyaltyChange::Reverse { .. } => {
            let Some(r) = s.redemption.as_ref().filter(|r| r.kind == TxnKind::Redeem) else {
                return Decision::Refuse(Refusal::NoSuchRedemption);
            };
            if s.reversed {
                return Decision::Refuse(Refusal::AlreadyReversed);
            }
            Decision::Apply(Apply {
                reward: r.reward.clone(),
                reverses: Some(r.id),
                stock_delta: if s.stock.is_some() { 1 } else { 0 },
                ..apply(TxnKind::Reverse, -r.points, s.granted)
            })
        }
        LoyaltyChange::Adjust { points } => {
            if *points == 0 || s.balance + points < 0 {
                return Decision::Refuse(Refusal::InsufficientPoints {
                    balance: s.balance,
                    needed: -points,
                });
            }
            Decision::Apply(apply(TxnKind::Adjust, *points, s.granted))
        }
        LoyaltyChange::Expire { points } => {
            let p = (*points).min(s.balance);
            if p <= 0 {
                return Decision::Refuse(Refusal::InsufficientPoints {
                    balance: s.balance,
                    needed: *points,
                });
            }
            Decision::Apply(apply(TxnKind::Expire, -p, s.granted))
        }
        LoyaltyChange::Leave { forfeit } => {
            let p = if *forfeit { -s.balance } else { 0 };
            Decision::Apply(apply(TxnKind::Forfeit, p, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::{SubjectId, UnixMillis};

    fn op(what: LoyaltyChange) -> LoyaltyOp {
        LoyaltyOp {
            subject: SubjectId::random(),
            key: "k".into(),
            purpose: "loyalty".into(),
            what,
            reason: "r".into(),
            source: "test".into(),
            at: UnixMillis(0),
        }
    }

    fn member(balance: i64) -> State {
        State {
            subject_known: true,
            granted: true,
            balance,
            ..State::default()
        }
    }

    fn earn(points: i64, day: Option<i64>, all: Option<i64>) -> LoyaltyOp {
        op(LoyaltyChange::Earn {
            rule: "orders".into(),
            points,
            cap_per_day: day,
            cap_total: all,
        })
    }

    #[test]
    fn earning_is_clamped_by_both_caps_and_refused_when_nothing_is_left() {
        let s = State {
            rule_today: 80,
            rule_total: 450,
            ..member(0)
        };
        let points = |d| match d {
            Decision::Apply(a) => a.points,
            other => panic!("{other:?}"),
        };
        assert_eq!(points(decide(&earn(50, Some(100), None), &s)), 20);
        assert_eq!(points(decide(&earn(50, None, Some(470)), &s)), 20);
        assert_eq!(points(decide(&earn(50, Some(100), Some(460)), &s)), 10);
        assert_eq!(points(decide(&earn(50, None, None), &s)), 50);
        assert_eq!(
            decide(&earn(50, Some(80), None), &s),
            Decision::Refuse(Refusal::Capped)
        );
    }

    #[test]
    fn nothing_is_earned_or_redeemed_without_the_purpose() {
        let s = State {
            granted: false,
            ..member(500)
        };
        assert_eq!(
            decide(&earn(5, None, None), &s),
            Decision::Refuse(Refusal::NotGranted)
        );
        let r = op(LoyaltyChange::Redeem {
            reward: "mug".into(),
            cost: 100,
        });
        assert_eq!(decide(&r, &s), Decision::Refuse(Refusal::NotGranted));
    }

    #[test]
    fn redemption_never_overdraws_points_or_stock() {
        let r = op(LoyaltyChange::Redeem {
            reward: "mug".into(),
            cost: 100,
        });
        assert!(matches!(
            decide(&r, &member(99)),
            Decision::Refuse(Refusal::InsufficientPoints { .. })
        ));
        let no_stock = State {
            stock: Some(0),
            ..member(100)
        };
        assert_eq!(decide(&r, &no_stock), Decision::Refuse(Refusal::OutOfStock));
        let ok = State {
            stock: Some(1),
            ..member(100)
        };
        match decide(&r, &ok) {
            Decision::Apply(a) => assert_eq!((a.points, a.stock_delta), (-100, -1)),
            other => panic!("{other:?}"),
        }
        match decide(&r, &member(100)) {
            Decision::Apply(a) => assert_eq!((a.points, a.stock_delta), (-100, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_key_seen_before_answers_with_its_transaction_or_conflicts() {
        let t = Txn {
            id: 7,
            subject: SubjectId::random(),
            key: "k".into(),
            kind: TxnKind::Earn,
            points: 10,
            rule: Some("orders".into()),
            reward: None,
            reverses: None,
            reason: "r".into(),
            source: "s".into(),
            at: UnixMillis(0),
        };
        let s = State {
            existing: Some(t.clone()),
            ..member(0)
        };
        assert_eq!(decide(&earn(10, None, None), &s), Decision::Duplicate(t));
        let r = op(LoyaltyChange::Redeem {
            reward: "mug".into(),
            cost: 1,
        });
        assert_eq!(decide(&r, &s), Decision::Refuse(Refusal::KeyConflict));
        // The same kind under another rule is another transaction, not this one.
        let other = op(LoyaltyChange::Earn {
            rule: "reviews".into(),
            points: 10,
            cap_per_day: None,
            cap_total: None,
        });
        assert_eq!(decide(&other, &s), Decision::Refuse(Refusal::KeyConflict));
    }

    #[test]
    fn a_redemption_is_reversed_once_with_its_points_and_stock() {
        let red = Txn {
            id: 3,
            subject: SubjectId::random(),
            key: "r".into(),
            kind: TxnKind::Redeem,
            points: -100,
            rule: None,
            reward: Some("mug".into()),
            reverses: None,
            reason: "r".into(),
            source: "s".into(),
            at: UnixMillis(0),
        };
        let rev = op(LoyaltyChange::Reverse { txn: 3 });
        let s = State {
            redemption: Some(red.clone()),
            stock: Some(0),
            ..member(0)
        };
        match decide(&rev, &s) {
            Decision::Apply(a) => {
                assert_eq!((a.points, a.stock_delta, a.reverses), (100, 1, Some(3)))
            }
            other => panic!("{other:?}"),
        }
        let again = State {
            reversed: true,
            ..s.clone()
        };
        assert_eq!(
            decide(&rev, &again),
            Decision::Refuse(Refusal::AlreadyReversed)
        );
        assert_eq!(
            decide(&rev, &member(0)),
            Decision::Refuse(Refusal::NoSuchRedemption)
        );
    }

    #[test]
    fn adjustments_and_expiry_never_go_below_zero_and_leaving_forfeits_when_told() {
        let down = op(LoyaltyChange::Adjust { points: -60 });
        assert!(matches!(
            decide(&down, &member(50)),
            Decision::Refuse(Refusal::InsufficientPoints { .. })
        ));
        let exp = op(LoyaltyChange::Expire { points: 80 });
        match decide(&exp, &member(50)) {
            Decision::Apply(a) => assert_eq!(a.points, -50),
            other => panic!("{other:?}"),
        }
        match decide(&op(LoyaltyChange::Leave { forfeit: true }), &member(50)) {
            Decision::Apply(a) => assert_eq!((a.points, a.member), (-50, false)),
            other => panic!("{other:?}"),
        }
        match decide(&op(LoyaltyChange::Leave { forfeit: false }), &member(50)) {
            Decision::Apply(a) => assert_eq!((a.points, a.member), (0, false)),
            other => panic!("{other:?}"),
        }
        let unknown = State::default();
        assert_eq!(
            decide(&earn(1, None, None), &unknown),
            Decision::Refuse(Refusal::UnknownSubject)
        );
    }
}
