//! The loyalty points ledger (issue 14): idempotent, append-only, never negative, under
//! concurrency on one store and (PostgreSQL) across nodes; erasure takes it all.

use crate::fixtures::*;
use crate::harness::Backend;
use candor_core::consent::{Action, Channel};
use candor_core::ledger::Actor;
use candor_core::{SubjectId, UnixMillis};
use candor_store::loyalty::*;
use candor_store::{Erasure, Store};
use std::collections::HashMap;
use std::sync::Arc;

pub async fn member(store: &dyn Store, user: &str) -> SubjectId {
    store
        .apply_consent(command(store, user, &[("loyalty", Action::Grant)]))
        .await
        .unwrap()
        .subject
}

pub fn op(subject: SubjectId, key: &str, what: LoyaltyChange) -> LoyaltyOp {
    LoyaltyOp {
        subject,
        key: key.into(),
        purpose: "loyalty".into(),
        what,
        reason: "test".into(),
        source: "test".into(),
        at: UnixMillis(now()),
    }
}

pub fn earn(points: i64) -> LoyaltyChange {
    LoyaltyChange::Earn {
        rule: "orders".into(),
        points,
        cap_per_day: None,
        cap_total: None,
    }
}

pub fn redeem(reward: &str, cost: i64) -> LoyaltyChange {
    LoyaltyChange::Redeem {
        reward: reward.into(),
        cost,
    }
}

fn applied(o: LoyaltyOutcome) -> (Txn, i64) {
    match o {
        LoyaltyOutcome::Applied { txn, balance } => (txn, balance),
        other => panic!("expected applied, got {other:?}"),
    }
}

/// Every transaction of `s`, oldest first.
pub async fn all_txns(store: &dyn Store, s: SubjectId) -> Vec<Txn> {
    let mut out = Vec::new();
    let mut before = i64::MAX;
    loop {
        let page = store.loyalty_history(s, before, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        before = last.id;
        out.extend(page);
    }
    out.reverse();
    out
}

pub async fn ledger_earns_redeems_and_reverses_idempotently(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let ann = member(s, "ann").await;
    s.set_reward_stock("mug", Some(1), false).await.unwrap();
    // Seeding does not overwrite what is there.
    s.set_reward_stock("mug", Some(50), true).await.unwrap();

    let (t1, bal) = applied(s.loyalty(op(ann, "order-1", earn(120))).await.unwrap());
    assert_eq!((t1.points, bal, t1.kind), (120, 120, TxnKind::Earn));
    // The same key again is the same transaction, however often.
    for _ in 0..3 {
        match s.loyalty(op(ann, "order-1", earn(120))).await.unwrap() {
            LoyaltyOutcome::Duplicate { txn, balance } => {
                assert_eq!((txn, balance), (t1.clone(), 120))
            }
            other => panic!("{other:?}"),
        }
    }
    // A different kind under a used key is a conflict, not a second transaction.
    assert_eq!(
        s.loyalty(op(ann, "order-1", redeem("mug", 10)))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::KeyConflict)
    );
    let (r, bal) = applied(
        s.loyalty(op(ann, "mug-1", redeem("mug", 100)))
            .await
            .unwrap(),
    );
    assert_eq!((r.points, bal), (-100, 20));
    assert_eq!(s.reward_stocks().await.unwrap()[0].stock, 0);
    // No points, no stock: refused, nothing written.
    assert!(matches!(
        s.loyalty(op(ann, "mug-2", redeem("mug", 100)))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::InsufficientPoints {
            balance: 20,
            needed: 100
        })
    ));
    applied(s.loyalty(op(ann, "order-2", earn(500))).await.unwrap());
    assert_eq!(
        s.loyalty(op(ann, "mug-3", redeem("mug", 100)))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::OutOfStock)
    );
    // Reversal: points and stock back, once.
    let (rev, bal) = applied(
        s.loyalty(op(ann, "rev-1", LoyaltyChange::Reverse { txn: r.id }))
            .await
            .unwrap(),
    );
    assert_eq!((rev.points, rev.reverses, bal), (100, Some(r.id), 620));
    assert_eq!(s.reward_stocks().await.unwrap()[0].stock, 1);
    assert_eq!(
        s.loyalty(op(ann, "rev-2", LoyaltyChange::Reverse { txn: r.id }))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::AlreadyReversed)
    );
    assert_eq!(
        s.loyalty(op(ann, "rev-3", LoyaltyChange::Reverse { txn: t1.id }))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::NoSuchRedemption)
    );
    // Adjustments never below zero; expiry writes off at most the balance.
    assert!(matches!(
        s.loyalty(op(ann, "adj-1", LoyaltyChange::Adjust { points: -1000 }))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::InsufficientPoints { .. })
    ));
    applied(
        s.loyalty(op(ann, "adj-2", LoyaltyChange::Adjust { points: -20 }))
            .await
            .unwrap(),
    );
    let (_, bal) = applied(
        s.loyalty(op(ann, "exp-1", LoyaltyChange::Expire { points: 10_000 }))
            .await
            .unwrap(),
    );
    assert_eq!(bal, 0);

    let txns = all_txns(s, ann).await;
    let kinds: Vec<TxnKind> = txns.iter().map(|t| t.kind).collect();
    use TxnKind::*;
    assert_eq!(kinds, [Earn, Redeem, Earn, Reverse, Adjust, Expire]);
    let acct = s.loyalty_account(ann).await.unwrap().unwrap();
    assert_eq!(acct.balance, txns.iter().map(|t| t.points).sum::<i64>());
    let totals = s.loyalty_totals().await.unwrap();
    assert_eq!(
        (totals.accounts, totals.members, totals.outstanding),
        (1, 1, 0)
    );
    assert!(totals.by_kind.contains(&(TxnKind::Earn, 620)));
    // The subject's rows are the subject's: another subject sees none of them.
    let bob = member(s, "bob").await;
    assert!(s
        .loyalty_history(bob, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.loyalty(op(bob, "rev-x", LoyaltyChange::Reverse { txn: r.id }))
            .await
            .unwrap(),
        LoyaltyOutcome::Refused(Refusal::NoSuchRedemption)
    );
    store.shutdown().await;
}

pub async fn earning_needs_the_purpose_and_respects_caps(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let ann = member(s, "ann").await;
    let capped = |points| LoyaltyChange::Earn {
        rule: "sessions".into(),
        points,
        cap_per_day: Some(25),
        cap_total: Some(40),
    };
    assert_eq!(
        applied(s.loyalty(op(ann, "a", capped(10))).await.unwrap())
            .0
            .points,
        10
    );
    assert_eq!(
        applied(s.loyalty(op(ann, "b", capped(20))).await.unwrap())
            .0
            .points,
        15
    );
    assert_eq!(
        s.loyalty(op(ann, "c", capped(20))).await.unwrap(),
        LoyaltyOutcome::Refused(Refusal::Capped)
    );
    // Tomorrow the day cap is fresh, the total cap is not.
    let mut tomorrow = op(ann, "d", capped(20));
    tomorrow.at = tomorrow.at.plus_days(1);
    assert_eq!(applied(s.loyalty(tomorrow).await.unwrap()).0.points, 15);
    // Another rule has caps of its own.
    applied(s.loyalty(op(ann, "e", earn(5))).await.unwrap());

    // Leaving: nothing more is earned or redeemed.
    s.apply_consent(command(s, "ann", &[("loyalty", Action::Withdraw)]))
        .await
        .unwrap();
    assert_eq!(
        s.loyalty(op(ann, "f", earn(5))).await.unwrap(),
        LoyaltyOutcome::Refused(Refusal::NotGranted)
    );
    assert_eq!(
        s.loyalty(op(ann, "g", redeem("mug", 5))).await.unwrap(),
        LoyaltyOutcome::Refused(Refusal::NotGranted)
    );
    let (t, bal) = applied(
        s.loyalty(op(ann, "leave", LoyaltyChange::Leave { forfeit: true }))
            .await
            .unwrap(),
    );
    assert_eq!((t.kind, t.points, bal), (TxnKind::Forfeit, -45, 0));
    assert!(!s.loyalty_account(ann).await.unwrap().unwrap().member);
    // Unknown subjects are refused and get no account.
    let ghost = SubjectId::random();
    assert_eq!(
        s.loyalty(op(ghost, "x", earn(5))).await.unwrap(),
        LoyaltyOutcome::Refused(Refusal::UnknownSubject)
    );
    assert!(s.loyalty_account(ghost).await.unwrap().is_none());
    store.shutdown().await;
}

/// Many concurrent earns and redemptions with repeated keys, through any of `nodes`:
/// then each balance is the sum of its transactions, none is negative, no key twice,
/// and the stock never went below zero.
pub async fn hammer(nodes: &[Arc<dyn Store>]) {
    let s0 = &*nodes[0];
    let people = [
        member(s0, "p1").await,
        member(s0, "p2").await,
        member(s0, "p3").await,
    ];
    s0.set_reward_stock("ticket", Some(7), false).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..240u32 {
        let store = nodes[i as usize % nodes.len()].clone();
        // Every key is sent twice (i and i + 1 share it), racing each other.
        let n = i / 2;
        let subject = people[(n as usize / 2) % people.len()];
        tasks.push(tokio::spawn(async move {
            let o = if n % 3 == 2 {
                op(subject, &format!("redeem-{n}"), redeem("ticket", 30))
            } else if n % 5 == 4 {
                op(subject, &format!("bag-{n}"), redeem("bag", 25))
            } else {
                op(subject, &format!("earn-{n}"), earn(20))
            };
            store.loyalty(o).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let mut applied_keys: HashMap<(SubjectId, String), Txn> = HashMap::new();
    for o in &outcomes {
        if let LoyaltyOutcome::Applied { txn, balance } = o {
            assert!(*balance >= 0);
            assert!(
                applied_keys
                    .insert((txn.subject, txn.key.clone()), txn.clone())
                    .is_none(),
                "{} applied twice",
                txn.key
            );
        }
    }
    // A duplicate answer names the transaction that was applied.
    for o in &outcomes {
        if let LoyaltyOutcome::Duplicate { txn, .. } = o {
            assert_eq!(applied_keys.get(&(txn.subject, txn.key.clone())), Some(txn));
        }
    }
    let mut tickets = 0;
    for p in people {
        let txns = all_txns(s0, p).await;
        let mut running = 0;
        for t in &txns {
            running += t.points;
            assert!(running >= 0, "balance went negative");
        }
        let acct = s0.loyalty_account(p).await.unwrap().unwrap();
        assert_eq!(acct.balance, running);
        let mut keys: Vec<&str> = txns.iter().map(|t| t.key.as_str()).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key stored twice");
        tickets += txns
            .iter()
            .filter(|t| t.reward.as_deref() == Some("ticket"))
            .count();
    }
    let left = s0.reward_stocks().await.unwrap()[0].stock;
    assert!(left >= 0);
    assert_eq!(left as usize + tickets, 7, "stock and redemptions disagree");
    assert!(
        applied_keys.len() > 60,
        "too little was applied to mean anything"
    );
}

pub async fn concurrent_earns_and_redemptions_stay_consistent(b: &dyn Backend) {
    let store = b.open().await;
    hammer(std::slice::from_ref(&store)).await;
    store.shutdown().await;
}

pub async fn erasure_takes_the_points_ledger(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let ann = member(s, "ann").await;
    applied(s.loyalty(op(ann, "a", earn(10))).await.unwrap());
    let out = s
        .erase(Erasure {
            subject: ann,
            actor: Actor::Admin,
            channel: Channel::Api,
            time_ms: UnixMillis(now()),
            only_if_abandoned: false,
        })
        .await
        .unwrap();
    assert_eq!(
        (out.deleted.loyalty_txns, out.deleted.loyalty_accounts),
        (1, 1)
    );
    assert!(s.loyalty_account(ann).await.unwrap().is_none());
    assert!(s
        .loyalty_history(ann, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.loyalty(op(ann, "b", earn(10))).await.unwrap(),
        LoyaltyOutcome::Refused(Refusal::UnknownSubject)
    );
    store.shutdown().await;
}

pub async fn segments_and_sizes_round_trip(b: &dyn Backend) {
    let store = b.open().await;
    let s = &*store;
    let seg = |name: &str, rule: &str, t| SegmentRecord {
        name: name.into(),
        purpose: "personalization".into(),
        rule: rule.into(),
        description: "d".into(),
        created_ms: t,
        updated_ms: t,
    };
    s.put_segment(seg("runners", "{}", 1)).await.unwrap();
    s.put_segment(seg("travellers", "{\"a\":1}", 2))
        .await
        .unwrap();
    s.put_segment(seg("runners", "{\"b\":2}", 3)).await.unwrap();
    let all = s.segments().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].rule.as_str(), all[0].created_ms, all[0].updated_ms),
        ("{\"b\":2}", 1, 3)
    );
    s.record_segment_sizes(100, vec![("runners".into(), 5), ("travellers".into(), 2)])
        .await
        .unwrap();
    s.record_segment_sizes(100, vec![("runners".into(), 6)])
        .await
        .unwrap();
    s.record_segment_sizes(101, vec![("runners".into(), 7)])
        .await
        .unwrap();
    let sizes = s.segment_sizes(100).await.unwrap();
    assert_eq!(
        sizes
            .iter()
            .map(|z| (z.name.as_str(), z.day, z.size))
            .collect::<Vec<_>>(),
        [
            ("runners", 100, 6),
            ("runners", 101, 7),
            ("travellers", 100, 2)
        ]
    );
    assert!(s.delete_segment("runners").await.unwrap());
    assert!(!s.delete_segment("runners").await.unwrap());
    assert_eq!(s.segment_sizes(0).await.unwrap().len(), 1);
    store.shutdown().await;
}
