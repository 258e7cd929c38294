//! The loyalty points ledger on SQLite: each op is decided and written inside the
//! writer's group, in a savepoint. The single writer is the lock: nothing else writes
//! between reading a subject's state and appending its transaction.

use crate::loyalty::{LoyaltyChange, LoyaltyOp, LoyaltyOutcome, Txn};
use crate::plan::loyalty::{decide, Decision, State};
use crate::{rows, statements as q, StoreError};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn apply(conn: &Connection, op: &LoyaltyOp) -> Result<LoyaltyOutcome, StoreError> {
    let subject = &op.subject.as_bytes()[..];
    let state = read_state(conn, op)?;
    let a = match decide(op, &state) {
        Decision::Duplicate(txn) => {
            return Ok(LoyaltyOutcome::Duplicate {
                txn,
                balance: state.balance,
            })
        }
        Decision::Refuse(r) => return Ok(LoyaltyOutcome::Refused(r)),
        Decision::Apply(a) => a,
    };
    let balance = state.balance + a.points;
    let id: i64 = conn.prepare_cached(q::INSERT_TXN)?.query_row(
        params![
            subject,
            op.key,
            a.kind.as_str(),
            a.points,
            a.rule,
            a.reward,
            a.reverses,
            op.reason,
            op.source,
            op.at.day(),
            op.at.0
        ],
        |r| r.get(0),
    )?;
    conn.prepare_cached(q::UPSERT_ACCOUNT)?
        .execute(params![subject, balance, a.member, op.at.0])?;
    if a.stock_delta != 0 {
        if let Some(reward) = &a.reward {
            let moved = conn.prepare_cached(q::MOVE_STOCK)?.execute(params![
                a.stock_delta,
                op.at.0,
                reward
            ])?;
            if moved != 1 {
                // Decided from the stock read above, in the same transaction.
                return Err(StoreError::Corrupt(
                    "reward stock moved under the writer".into(),
                ));
            }
        }
    }
    Ok(LoyaltyOutcome::Applied {
        txn: Txn {
            id,
            subject: op.subject,
            key: op.key.clone(),
            kind: a.kind,
            points: a.points,
            rule: a.rule,
            reward: a.reward,
            reverses: a.reverses,
            reason: op.reason.clone(),
            source: op.source.clone(),
            at: op.at,
        },
        balance,
    })
}

fn read_state(conn: &Connection, op: &LoyaltyOp) -> Result<State, StoreError> {
    let subject = &op.subject.as_bytes()[..];
    let mut s = State {
        existing: conn
            .prepare_cached(&q::txn_by_key())?
            .query_row(params![subject, op.key], |r| Ok(rows::txn(r)))
            .optional()?
            .transpose()?,
        ..State::default()
    };
    if s.existing.is_none() {
        s.subject_known = conn
            .prepare_cached(q::SUBJECT_KEY)?
            .exists(params![subject])?;
    }
    s.granted = conn
        .prepare_cached(q::GRANTED)?
        .exists(params![subject, op.purpose])?;
    s.balance = conn
        .prepare_cached(q::ACCOUNT)?
        .query_row(params![subject], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    match &op.what {
        LoyaltyChange::Earn { rule, .. } => {
            (s.rule_today, s.rule_total) = conn
                .prepare_cached(q::RULE_USE)?
                .query_row(params![op.at.day(), subject, rule], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        }
        LoyaltyChange::Redeem { reward, .. } => s.stock = stock(conn, reward)?,
        LoyaltyChange::Reverse { txn } => {
            s.redemption = conn
                .prepare_cached(&q::txn_by_id())?
                .query_row(params![subject, txn], |r| Ok(rows::txn(r)))
                .optional()?
                .transpose()?;
            s.reversed = conn
                .prepare_cached(q::REVERSED)?
                .exists(params![subject, txn])?;
            if let Some(reward) = s.redemption.as_ref().and_then(|r| r.reward.as_ref()) {
                s.stock = stock(conn, reward)?;
            }
        }
        _ => {}
    }
    Ok(s)
}

fn stock(conn: &Connection, reward: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(q::REWARD_STOCK)?
        .query_row(params![reward], |r| r.get(0))
        .optional()?)
}

/// Reads and the small writes beside the writer (stock, segments), each on a
/// connection of its own.
pub(super) mod side {
    use crate::loyalty::{
        Account, ProgramTotals, RewardStock, SegmentRecord, SegmentSize, Txn, TxnKind,
    };
    use crate::sqlite::read::all;
    use crate::{rows, statements as q, StoreError};
    use candor_core::{SubjectId, UnixMillis};
    use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

    pub fn account(c: &Connection, s: SubjectId) -> Result<Option<Account>, StoreError> {
        Ok(c.prepare_cached(q::ACCOUNT)?
            .query_row(params![&s.as_bytes()[..]], |r| {
                Ok(Account {
                    subject: s,
                    balance: r.get(0)?,
                    member: r.get(1)?,
                    joined: UnixMillis(r.get(2)?),
                })
            })
            .optional()?)
    }

    pub fn history(
        c: &Connection,
        s: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Txn>, StoreError> {
        all(
            c,
            &q::txns_before(),
            params![&s.as_bytes()[..], before, limit as i64],
            |r| rows::txn(r),
        )
    }

    pub fn totals(c: &Connection) -> Result<ProgramTotals, StoreError> {
        let (accounts, members, outstanding): (i64, i64, i64) = c
            .prepare_cached(q::PROGRAM_ACCOUNTS)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let by_kind = all(c, q::PROGRAM_BY_KIND, [], |r| {
            let kind: String = r.get(0)?;
            let k = TxnKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown transaction kind {kind}")))?;
            Ok((k, r.get::<_, i64>(1)?))
        })?;
        Ok(ProgramTotals {
            members: members as u64,
            accounts: accounts as u64,
            by_kind,
            outstanding,
        })
    }

    pub fn with_points(
        c: &Connection,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let after = after.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
        all(
            c,
            q::ACCOUNTS_WITH_POINTS,
            params![after, limit as i64],
            |r| rows::Col::subject(r, 0),
        )
    }

    pub fn stocks(c: &Connection) -> Result<Vec<RewardStock>, StoreError> {
        all(c, q::STOCKS, [], |r| {
            Ok(RewardStock {
                reward: r.get(0)?,
                stock: r.get(1)?,
            })
        })
    }

    pub fn set_stock(
        c: &mut Connection,
        reward: &str,
        stock: Option<i64>,
        only_if_absent: bool,
        at: i64,
    ) -> Result<(), StoreError> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = tx
            .prepare_cached(q::REWARD_STOCK)?
            .exists(params![reward])?;
        if !(only_if_absent && exists) {
            match stock {
                Some(n) => tx
                    .prepare_cached(q::SET_STOCK)?
                    .execute(params![reward, n, at])?,
                None => tx
                    .prepare_cached(q::REMOVE_STOCK)?
                    .execute(params![reward])?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    pub fn segments(c: &Connection) -> Result<Vec<SegmentRecord>, StoreError> {
        all(c, q::SEGMENTS, [], |r| rows::segment(r))
    }

    pub fn put_segment(c: &mut Connection, s: &SegmentRecord) -> Result<(), StoreError> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(q::PUT_SEGMENT)?.execute(params![
            s.name,
            s.purpose,
            s.rule,
            s.description,
            s.updated_ms
        ])?;
        tx.commit()?;
        Ok(())
    }

    pub fn delete_segment(c: &mut Connection, name: &str) -> Result<bool, StoreError> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(q::DELETE_SEGMENT)?
            .execute(params![name])?;
        tx.prepare_cached(q::DELETE_SEGMENT_SIZES)?
            .execute(params![name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn put_sizes(
        c: &mut Connection,
        day: i32,
        sizes: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (name, size) in sizes {
            tx.prepare_cached(q::PUT_SEGMENT_SIZE)?
                .execute(params![name, day, size])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn sizes(c: &Connection, from_day: i32) -> Result<Vec<SegmentSize>, StoreError> {
        all(c, q::SEGMENT_SIZES, params![from_day], |r| {
            rows::segment_size(r)
        })
    }
}
