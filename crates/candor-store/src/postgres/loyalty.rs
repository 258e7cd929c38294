//! The loyalty points ledger on PostgreSQL: each op is one small transaction on the
//! pool, beside the writer's groups, decided by `plan::loyalty` under two row locks
//! taken in one order by every node: the subject's account (`FOR UPDATE`, created
//! empty first if need be), then the reward's stock row. So concurrent earns and
//! redemptions of one person, on any node, are decided one after the other from what
//! is committed, and a stock is never spent twice. The subject's own row is locked
//! shared before either, as a field write does, so an erasure (which deletes it first)
//! cannot interleave and leave a transaction behind it. A refused or duplicate op rolls
//! back, so it leaves not even the empty account.

use super::{sql, Shared};
use crate::loyalty::{LoyaltyChange, LoyaltyOp, LoyaltyOutcome, Txn};
use crate::plan::loyalty::{decide, Decision, State};
use crate::rows::{self, Col};
use crate::{statements as q, StoreError};
use deadpool_postgres::GenericClient;

pub(super) async fn apply(shared: &Shared, op: &LoyaltyOp) -> Result<LoyaltyOutcome, StoreError> {
    crate::retry::retrying("loyalty", || async {
        let mut c = shared.pool.get().await?;
        let tx = c.transaction().await?;
        let subject = &op.subject.as_bytes()[..];
        let known = sql::query_opt(
            &tx,
            "SELECT 1 FROM subjects WHERE subject_id = $1 FOR SHARE",
            &[&subject],
        )
        .await?
        .is_some();
        if known {
            sql::execute(
                &tx,
                "INSERT INTO loyalty_accounts (subject_id, balance, member, joined_ms, updated_ms)
                 VALUES ($1, 0, TRUE, $2, $2) ON CONFLICT (subject_id) DO NOTHING",
                &[&subject, &op.at.0],
            )
            .await?;
        }
        let balance: i64 = match sql::query_opt(
            &tx,
            "SELECT balance FROM loyalty_accounts WHERE subject_id = $1 FOR UPDATE",
            &[&subject],
        )
        .await?
        {
            Some(r) => r.int(0)?,
            None => 0,
        };
        let state = read_state(&tx, op, known, balance).await?;
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
        let id = sql::query_opt(
            &tx,
            q::INSERT_TXN,
            &[
                &subject,
                &op.key,
                &a.kind.as_str(),
                &a.points,
                &a.rule,
                &a.reward,
                &a.reverses,
                &op.reason,
                &op.source,
                &op.at.day(),
                &op.at.0,
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Database("insert returned no id".into()))?
        .int(0)?;
        sql::execute(
            &tx,
            q::UPSERT_ACCOUNT,
            &[&subject, &balance, &a.member, &op.at.0],
        )
        .await?;
        if a.stock_delta != 0 {
            if let Some(reward) = &a.reward {
                let moved =
                    sql::execute(&tx, q::MOVE_STOCK, &[&a.stock_delta, &op.at.0, reward]).await?;
                if moved != 1 {
                    return Err(StoreError::Corrupt(
                        "reward stock moved while its row was locked".into(),
                    ));
                }
            }
        }
        tx.commit().await?;
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
    })
    .await
}

async fn read_state<C: GenericClient>(
    tx: &C,
    op: &LoyaltyOp,
    known: bool,
    balance: i64,
) -> Result<State, StoreError> {
    let subject = &op.subject.as_bytes()[..];
    let mut s = State {
        existing: sql::query_opt(tx, &q::txn_by_key(), &[&subject, &op.key])
            .await?
            .map(|r| rows::txn(&r))
            .transpose()?,
        subject_known: known,
        balance,
        ..State::default()
    };
    s.granted = sql::query_opt(tx, q::GRANTED, &[&subject, &op.purpose])
        .await?
        .is_some();
    match &op.what {
        LoyaltyChange::Earn { rule, .. } => {
            let r = sql::query_opt(tx, q::RULE_USE, &[&op.at.day(), &subject, rule])
                .await?
                .ok_or_else(|| StoreError::Database("no aggregate row".into()))?;
            (s.rule_today, s.rule_total) = (r.int(0)?, r.int(1)?);
        }
        LoyaltyChange::Redeem { reward, .. } => s.stock = stock(tx, reward).await?,
        LoyaltyChange::Reverse { txn } => {
            s.redemption = sql::query_opt(tx, &q::txn_by_id(), &[&subject, txn])
                .await?
                .map(|r| rows::txn(&r))
                .transpose()?;
            s.reversed = sql::query_opt(tx, q::REVERSED, &[&subject, txn])
                .await?
                .is_some();
            if let Some(reward) = s.redemption.as_ref().and_then(|r| r.reward.clone()) {
                s.stock = stock(tx, &reward).await?;
            }
        }
        _ => {}
    }
    Ok(s)
}

async fn stock<C: GenericClient>(tx: &C, reward: &str) -> Result<Option<i64>, StoreError> {
    sql::query_opt(
        tx,
        "SELECT stock FROM loyalty_rewards WHERE reward_id = $1 FOR UPDATE",
        &[&reward],
    )
    .await?
    .map(|r| r.int(0))
    .transpose()
}

/// Reads and the small writes beside the ledger (stock, segments).
pub(super) mod side {
    use super::super::sql;
    use crate::loyalty::{
        Account, ProgramTotals, RewardStock, SegmentRecord, SegmentSize, Txn, TxnKind,
    };
    use crate::rows::{self, Col};
    use crate::{statements as q, StoreError};
    use candor_core::{SubjectId, UnixMillis};
    use deadpool_postgres::Object;

    pub async fn account(c: &Object, s: SubjectId) -> Result<Option<Account>, StoreError> {
        sql::query_opt(c, q::ACCOUNT, &[&&s.as_bytes()[..]])
            .await?
            .map(|r| {
                Ok(Account {
                    subject: s,
                    balance: r.int(0)?,
                    member: r.flag(1)?,
                    joined: UnixMillis(r.int(2)?),
                })
            })
            .transpose()
    }

    pub async fn history(
        c: &Object,
        s: SubjectId,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Txn>, StoreError> {
        sql::query(
            c,
            &q::txns_before(),
            &[&&s.as_bytes()[..], &before, &(limit as i64)],
        )
        .await?
        .iter()
        .map(rows::txn)
        .collect()
    }

    pub async fn totals(c: &Object) -> Result<ProgramTotals, StoreError> {
        let r = sql::query_opt(c, q::PROGRAM_ACCOUNTS, &[])
            .await?
            .ok_or_else(|| StoreError::Database("no aggregate row".into()))?;
        let (accounts, members, outstanding) = (r.int(0)?, r.int(1)?, r.int(2)?);
        let by_kind = sql::query(c, q::PROGRAM_BY_KIND, &[])
            .await?
            .iter()
            .map(|r| {
                let kind = r.text(0)?;
                let k = TxnKind::parse(&kind).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown transaction kind {kind}"))
                })?;
                Ok((k, r.int(1)?))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(ProgramTotals {
            members: members as u64,
            accounts: accounts as u64,
            by_kind,
            outstanding,
        })
    }

    pub async fn with_points(
        c: &Object,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let after = after.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
        sql::query(c, q::ACCOUNTS_WITH_POINTS, &[&after, &(limit as i64)])
            .await?
            .iter()
            .map(|r| r.subject(0))
            .collect()
    }

    pub async fn stocks(c: &Object) -> Result<Vec<RewardStock>, StoreError> {
        sql::query(c, q::STOCKS, &[])
            .await?
            .iter()
            .map(|r| {
                Ok(RewardStock {
                    reward: r.text(0)?,
                    stock: r.int(1)?,
                })
            })
            .collect()
    }

    pub async fn set_stock(
        c: &mut Object,
        reward: &str,
        stock: Option<i64>,
        only_if_absent: bool,
        at: i64,
    ) -> Result<(), StoreError> {
        let tx = c.transaction().await?;
        let exists = sql::query_opt(
            &tx,
            "SELECT 1 FROM loyalty_rewards WHERE reward_id = $1 FOR UPDATE",
            &[&reward],
        )
        .await?
        .is_some();
        if !(only_if_absent && exists) {
            match stock {
                Some(n) => sql::execute(&tx, q::SET_STOCK, &[&reward, &n, &at]).await?,
                None => sql::execute(&tx, q::REMOVE_STOCK, &[&reward]).await?,
            };
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn segments(c: &Object) -> Result<Vec<SegmentRecord>, StoreError> {
        sql::query(c, q::SEGMENTS, &[])
            .await?
            .iter()
            .map(rows::segment)
            .collect()
    }

    pub async fn put_segment(c: &Object, s: &SegmentRecord) -> Result<(), StoreError> {
        sql::execute(
            c,
            q::PUT_SEGMENT,
            &[&s.name, &s.purpose, &s.rule, &s.description, &s.updated_ms],
        )
        .await?;
        Ok(())
    }

    pub async fn delete_segment(c: &mut Object, name: &str) -> Result<bool, StoreError> {
        let tx = c.transaction().await?;
        let n = sql::execute(&tx, q::DELETE_SEGMENT, &[&name]).await?;
        sql::execute(&tx, q::DELETE_SEGMENT_SIZES, &[&name]).await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn put_sizes(
        c: &mut Object,
        day: i32,
        sizes: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let tx = c.transaction().await?;
        for (name, size) in sizes {
            sql::execute(&tx, q::PUT_SEGMENT_SIZE, &[name, &i64::from(day), size]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn sizes(c: &Object, from_day: i32) -> Result<Vec<SegmentSize>, StoreError> {
        sql::query(c, q::SEGMENT_SIZES, &[&i64::from(from_day)])
            .await?
            .iter()
            .map(rows::segment_size)
            .collect()
    }
}
