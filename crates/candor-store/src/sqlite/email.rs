//! The email side on SQLite (issue 16): reads on the reader pool, and the queue's and
//! campaigns' small writes each in a transaction of their own beside the writer (they
//! wait for its group through the busy timeout). Subscriptions change only in the
//! writer's consent path (`consent.rs`).

use super::Sqlite;
use crate::email::*;
use crate::rows;
use crate::{statements as q, StoreError};
use candor_core::crypto::LookupHash;
use candor_core::{SubjectId, UnixMillis};
use rusqlite::{params, Connection, TransactionBehavior};

fn all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl EmailStore for Sqlite {
    async fn subscriptions(&self, subject: SubjectId) -> Result<Vec<Subscription>, StoreError> {
        self.read(move |c| {
            all(
                c,
                &q::subscriptions(),
                params![&subject.as_bytes()[..]],
                |r| rows::subscription(r),
            )
        })
        .await
    }

    async fn list_counts(&self) -> Result<Vec<ListCounts>, StoreError> {
        self.read(|c| {
            let rows = all(c, q::LIST_COUNTS, [], |r| {
                let status: String = r.get(1)?;
                let status = SubStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("subscription {status:?}")))?;
                Ok((
                    r.get::<_, String>(0)?,
                    status,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            Ok(fold_list_counts(rows))
        })
        .await
    }

    async fn list_activity(&self, since_ms: i64) -> Result<Vec<ListDay>, StoreError> {
        self.read(move |c| {
            let row = |r: &rusqlite::Row<'_>| -> Result<(String, i64, i64), StoreError> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            };
            let confirmed = all(c, q::LIST_CONFIRMATIONS_BY_DAY, params![since_ms], row)?;
            let left = all(c, q::LIST_DEPARTURES_BY_DAY, params![since_ms], row)?;
            Ok(fold_list_activity(confirmed, left))
        })
        .await
    }

    async fn list_members(
        &self,
        list: &str,
        after: Option<SubjectId>,
        n: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let list = list.to_owned();
        self.read(move |c| {
            all(
                c,
                q::LIST_MEMBERS,
                params![list, after_bytes(after), limit(n)],
                |r| {
                    let b: Vec<u8> = r.get(0)?;
                    let b: [u8; 16] = b
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("subject id length".into()))?;
                    Ok(SubjectId::from_bytes(b))
                },
            )
        })
        .await
    }

    async fn expire_pending(&self, before_ms: i64) -> Result<Vec<SubjectId>, StoreError> {
        self.write(move |c| {
            let mut out = all(c, q::EXPIRE_PENDING, params![before_ms], |r| {
                rows::Col::subject(r, 0)
            })?;
            out.sort_unstable();
            out.dedup();
            Ok(out)
        })
        .await
    }

    async fn suppress(&self, s: Suppression) -> Result<bool, StoreError> {
        self.write(move |c| {
            let n = c.prepare_cached(q::SUPPRESS)?.execute(params![
                &s.address.0[..],
                s.list,
                s.reason.as_str(),
                s.created_ms
            ])?;
            Ok(n > 0)
        })
        .await
    }

    async fn suppressions_of(&self, address: LookupHash) -> Result<Vec<Suppression>, StoreError> {
        self.read(move |c| {
            all(c, q::SUPPRESSIONS_OF, params![&address.0[..]], |r| {
                rows::suppression(r)
            })
        })
        .await
    }

    async fn suppression_counts(&self) -> Result<Vec<(SuppressReason, i64)>, StoreError> {
        self.read(|c| {
            all(c, q::SUPPRESSION_COUNTS, [], |r| {
                let reason: String = r.get(0)?;
                let reason = SuppressReason::parse(&reason)
                    .ok_or_else(|| StoreError::Corrupt(format!("suppression {reason:?}")))?;
                Ok((reason, r.get::<_, i64>(1)?))
            })
        })
        .await
    }

    async fn create_campaign(&self, n: NewCampaign) -> Result<i64, StoreError> {
        self.write(move |c| {
            let id = c.prepare_cached(q::INSERT_CAMPAIGN)?.query_row(
                params![
                    n.name,
                    n.list,
                    n.segment,
                    n.subject_line,
                    n.text_body,
                    n.html_body,
                    n.created_ms
                ],
                |r| r.get(0),
            )?;
            Ok(id)
        })
        .await
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        self.read(|c| all(c, &q::campaigns(), [], |r| rows::campaign(r)))
            .await
    }

    async fn campaign(&self, id: i64) -> Result<Option<Campaign>, StoreError> {
        self.read(move |c| {
            Ok(all(c, &q::campaign(), params![id], |r| rows::campaign(r))?
                .into_iter()
                .next())
        })
        .await
    }

    async fn set_campaign_status(
        &self,
        id: i64,
        from: CampaignStatus,
        to: CampaignStatus,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let n = c.prepare_cached(q::SET_CAMPAIGN_STATUS)?.execute(params![
                to.as_str(),
                at.0,
                id,
                from.as_str()
            ])?;
            Ok(n > 0)
        })
        .await
    }

    async fn enqueue(
        &self,
        campaign: i64,
        subjects: Vec<SubjectId>,
        at: UnixMillis,
    ) -> Result<u64, StoreError> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0u64;
            {
                let mut st = tx.prepare_cached(q::ENQUEUE)?;
                for s in &subjects {
                    n += st.execute(params![campaign, &s.as_bytes()[..], at.0])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn due_messages(
        &self,
        now: UnixMillis,
        n: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        self.read(move |c| {
            all(c, &q::due_messages(), params![now.0, limit(n)], |r| {
                rows::message(r)
            })
        })
        .await
    }

    async fn update_messages(&self, updates: Vec<MessageUpdate>) -> Result<Vec<bool>, StoreError> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(updates.len());
            {
                let mut st = tx.prepare_cached(q::UPDATE_MESSAGE)?;
                for u in &updates {
                    let n = st.execute(params![
                        u.to.as_str(),
                        u.attempts,
                        u.next_ms,
                        u.detail,
                        u.at.0,
                        u.campaign,
                        &u.subject.as_bytes()[..],
                        u.from.as_str()
                    ])?;
                    out.push(n > 0);
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn campaign_counts(&self) -> Result<Vec<CampaignCounts>, StoreError> {
        self.read(|c| {
            let rows = all(c, q::CAMPAIGN_COUNTS, [], |r| {
                let status: String = r.get(1)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    rows::message_status(&status)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut counts = fold_campaign_counts(rows);
            let left = all(c, q::CAMPAIGN_UNSUBSCRIBED, [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
            add_unsubscribed(&mut counts, left);
            Ok(counts)
        })
        .await
    }

    async fn campaign_messages(
        &self,
        campaign: i64,
        after: Option<SubjectId>,
        n: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        self.read(move |c| {
            all(
                c,
                &q::campaign_messages(),
                params![campaign, after_bytes(after), limit(n)],
                |r| rows::message(r),
            )
        })
        .await
    }

    async fn open_messages(&self, campaign: i64) -> Result<i64, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(q::OPEN_MESSAGES)?
                .query_row(params![campaign], |r| r.get(0))?)
        })
        .await
    }
}
