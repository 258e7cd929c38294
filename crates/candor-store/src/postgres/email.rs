//! The email side on PostgreSQL (issue 16): reads and the queue's and campaigns' small
//! writes on the pool, each in a short transaction of its own. Subscriptions change
//! only in the consent transaction (`consent.rs`). On Citus the queue and campaigns
//! are coordinator tables, subscriptions live on their subject's shard and
//! suppressions are distributed by address hash (`schema::PLACEMENT`).

use super::{sql, Postgres};
use crate::email::*;
use crate::rows::{self, Col};
use crate::{statements as q, StoreError};
use candor_core::crypto::LookupHash;
use candor_core::{SubjectId, UnixMillis};

#[async_trait::async_trait]
impl EmailStore for Postgres {
    async fn subscriptions(&self, subject: SubjectId) -> Result<Vec<Subscription>, StoreError> {
        let c = self.client().await?;
        sql::query(&c, &q::subscriptions(), &[&&subject.as_bytes()[..]])
            .await?
            .iter()
            .map(rows::subscription)
            .collect()
    }

    async fn list_counts(&self) -> Result<Vec<ListCounts>, StoreError> {
        let c = self.client().await?;
        let rows = sql::query(&c, q::LIST_COUNTS, &[])
            .await?
            .iter()
            .map(|r| {
                let status = r.text(1)?;
                let status = SubStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("subscription {status:?}")))?;
                Ok((r.text(0)?, status, r.int(2)?, r.int(3)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(fold_list_counts(rows))
    }

    async fn list_activity(&self, since_ms: i64) -> Result<Vec<ListDay>, StoreError> {
        let c = self.client().await?;
        let by_day = |rows: Vec<tokio_postgres::Row>| {
            rows.iter()
                .map(|r| Ok((r.text(0)?, r.int(1)?, r.int(2)?)))
                .collect::<Result<Vec<_>, StoreError>>()
        };
        let confirmed = by_day(sql::query(&c, q::LIST_CONFIRMATIONS_BY_DAY, &[&since_ms]).await?)?;
        let left = by_day(sql::query(&c, q::LIST_DEPARTURES_BY_DAY, &[&since_ms]).await?)?;
        Ok(fold_list_activity(confirmed, left))
    }

    async fn list_members(
        &self,
        list: &str,
        after: Option<SubjectId>,
        n: usize,
    ) -> Result<Vec<SubjectId>, StoreError> {
        let c = self.client().await?;
        sql::query(
            &c,
            q::LIST_MEMBERS,
            &[&list, &after_bytes(after), &limit(n)],
        )
        .await?
        .iter()
        .map(|r| r.subject(0))
        .collect()
    }

    async fn expire_pending(&self, before_ms: i64) -> Result<Vec<SubjectId>, StoreError> {
        let c = self.client().await?;
        let mut out = sql::query(&c, q::EXPIRE_PENDING, &[&before_ms])
            .await?
            .iter()
            .map(|r| r.subject(0))
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn suppress(&self, s: Suppression) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = sql::execute(
            &c,
            q::SUPPRESS,
            &[
                &&s.address.0[..],
                &s.list,
                &s.reason.as_str(),
                &s.created_ms,
            ],
        )
        .await?;
        Ok(n > 0)
    }

    async fn suppressions_of(&self, address: LookupHash) -> Result<Vec<Suppression>, StoreError> {
        let c = self.client().await?;
        sql::query(&c, q::SUPPRESSIONS_OF, &[&&address.0[..]])
            .await?
            .iter()
            .map(rows::suppression)
            .collect()
    }

    async fn suppression_counts(&self) -> Result<Vec<(SuppressReason, i64)>, StoreError> {
        let c = self.client().await?;
        sql::query(&c, q::SUPPRESSION_COUNTS, &[])
            .await?
            .iter()
            .map(|r| {
                let reason = r.text(0)?;
                let reason = SuppressReason::parse(&reason)
                    .ok_or_else(|| StoreError::Corrupt(format!("suppression {reason:?}")))?;
                Ok((reason, r.int(1)?))
            })
            .collect()
    }

    async fn create_campaign(&self, n: NewCampaign) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let row = sql::query_opt(
            &c,
            q::INSERT_CAMPAIGN,
            &[
                &n.name,
                &n.list,
                &n.segment,
                &n.subject_line,
                &n.text_body,
                &n.html_body,
                &n.created_ms,
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Database("INSERT … RETURNING returned no row".into()))?;
        row.int(0)
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        let c = self.client().await?;
        sql::query(&c, &q::campaigns(), &[])
            .await?
            .iter()
            .map(rows::campaign)
            .collect()
    }

    async fn campaign(&self, id: i64) -> Result<Option<Campaign>, StoreError> {
        let c = self.client().await?;
        sql::query_opt(&c, &q::campaign(), &[&id])
            .await?
            .map(|r| rows::campaign(&r))
            .transpose()
    }

    async fn set_campaign_status(
        &self,
        id: i64,
        from: CampaignStatus,
        to: CampaignStatus,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = sql::execute(
            &c,
            q::SET_CAMPAIGN_STATUS,
            &[&to.as_str(), &at.0, &id, &from.as_str()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn enqueue(
        &self,
        campaign: i64,
        subjects: Vec<SubjectId>,
        at: UnixMillis,
    ) -> Result<u64, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut n = 0;
        for s in &subjects {
            n += sql::execute(&tx, q::ENQUEUE, &[&campaign, &&s.as_bytes()[..], &at.0]).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn due_messages(
        &self,
        now: UnixMillis,
        n: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let c = self.client().await?;
        sql::query(&c, &q::due_messages(), &[&now.0, &limit(n)])
            .await?
            .iter()
            .map(rows::message)
            .collect()
    }

    async fn update_messages(&self, updates: Vec<MessageUpdate>) -> Result<Vec<bool>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut out = Vec::with_capacity(updates.len());
        for u in &updates {
            let n = sql::execute(
                &tx,
                q::UPDATE_MESSAGE,
                &[
                    &u.to.as_str(),
                    &i64::from(u.attempts),
                    &u.next_ms,
                    &u.detail,
                    &u.at.0,
                    &u.campaign,
                    &&u.subject.as_bytes()[..],
                    &u.from.as_str(),
                ],
            )
            .await?;
            out.push(n > 0);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn campaign_counts(&self) -> Result<Vec<CampaignCounts>, StoreError> {
        let c = self.client().await?;
        let rows = sql::query(&c, q::CAMPAIGN_COUNTS, &[])
            .await?
            .iter()
            .map(|r| Ok((r.int(0)?, rows::message_status(&r.text(1)?)?, r.int(2)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut counts = fold_campaign_counts(rows);
        let left = sql::query(&c, q::CAMPAIGN_UNSUBSCRIBED, &[])
            .await?
            .iter()
            .map(|r| Ok((r.int(0)?, r.int(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        add_unsubscribed(&mut counts, left);
        Ok(counts)
    }

    async fn campaign_messages(
        &self,
        campaign: i64,
        after: Option<SubjectId>,
        n: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let c = self.client().await?;
        sql::query(
            &c,
            &q::campaign_messages(),
            &[&campaign, &after_bytes(after), &limit(n)],
        )
        .await?
        .iter()
        .map(rows::message)
        .collect()
    }

    async fn open_messages(&self, campaign: i64) -> Result<i64, StoreError> {
        let c = self.client().await?;
        sql::query_opt(&c, q::OPEN_MESSAGES, &[&campaign])
            .await?
            .map_or(Ok(0), |r| r.int(0))
    }
}
