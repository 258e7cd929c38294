//! Email on consent (issue 16), as it crosses the store interface: a person's
//! subscriptions to the operator's lists, the suppression list every send honours, the
//! campaigns and the send queue's rows.
//!
//! A subscription changes only inside a consent command ([`ListChange`]), in the same
//! transaction as the ledger record that proves it (`plan::email`): a confirmation is a
//! `given` record and a departure a `withdrawn` one under the marker purpose
//! [`candor_core::ledger::LIST_PURPOSE`], with the list in the evidence. The queue's
//! rows are keyed by (campaign, subject) so that a subscriber can be queued for a
//! campaign once, and a row marked [`MessageStatus::Committing`] before the message's
//! final SMTP dot is never sent again (`candor-mail`, `ARCHITECTURE.md`).

use crate::StoreError;
use candor_core::crypto::LookupHash;
use candor_core::{SubjectId, UnixMillis};

/// Where a person stands on one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubStatus {
    /// Asked to join; waiting for the confirmation link to be followed.
    Pending,
    /// Confirmed by the person (double opt-in): campaigns to the list may reach them.
    Confirmed,
    /// Left the list (or never confirmed before the request expired).
    Unsubscribed,
}

impl SubStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Unsubscribed => "unsubscribed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Unsubscribed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A change to one subscription, carried by a consent command.
#[derive(Clone, Debug)]
pub struct ListChange {
    /// The list's name (checked against the configuration by the caller; letters,
    /// digits, `_`, `-`, `.`, at most 64 bytes, so it can stand in ledger evidence).
    pub list: String,
    /// The notice of the list's purpose the person was shown, recorded in the marker
    /// record.
    pub notice_version: u32,
    pub notice_hash: [u8; 32],
    pub action: ListAction,
}

/// What a person does with a list.
#[derive(Clone, Debug)]
pub enum ListAction {
    /// Asks to join: a pending subscription (a confirmed one stays confirmed) and
    /// whether a confirmation mail may go out now, at most `max` per `window_ms` per
    /// address and list. Nothing is recorded in the ledger: nothing was consented yet.
    Request { window_ms: i64, max: u32 },
    /// Follows the confirmation link: pending → confirmed, a `given` marker record with
    /// `confirmation` (the link's id) and, when the operator asks for it, the digest of
    /// `origin` (IP address and user agent), which is kept sealed beside the
    /// subscription. A request since left or expired is refused (`NotPending`).
    Confirm {
        confirmation: String,
        origin: Option<Vec<u8>>,
    },
    /// Leaves the list: a `withdrawn` marker record and the address suppressed for the
    /// list. Leaving a list one is not on changes nothing. `campaign`: the campaign
    /// whose mail's unsubscribe link was followed, named in the record's evidence and
    /// counted as that campaign's unsubscribe (`CampaignCounts::unsubscribed`).
    Leave { campaign: Option<i64> },
}

/// What a list change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOutcome {
    pub before: Option<SubStatus>,
    pub after: SubStatus,
    /// A `Request` that may mail a confirmation now.
    pub send_confirmation: bool,
    /// The ledger `seq` of the marker record appended, if one was.
    pub recorded: Option<u64>,
}

/// One subscription as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub subject: SubjectId,
    pub list: String,
    pub status: SubStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub confirmed_ms: Option<i64>,
    /// Confirmation mails sent in the current window, and when the window began.
    pub sends: u32,
    pub window_ms: i64,
    /// The IP address and user agent of the confirmation, sealed under the subject's
    /// key (`seal::origin`), when the operator keeps them.
    pub origin: Option<Vec<u8>>,
}

/// Counts for one list (the dashboard).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListCounts {
    pub list: String,
    pub pending: i64,
    pub confirmed: i64,
    pub unsubscribed: i64,
    /// Subscriptions, in any status now, that were confirmed at some time (a person
    /// who confirmed and left counts; one who left or is waiting unconfirmed does not).
    pub ever_confirmed: i64,
}

/// One list's confirmations and departures on one UTC day (the dashboard's growth
/// chart), read from the subscriptions as they stand: each subscription's latest
/// confirmation (`confirmed_ms`) and, if it is unsubscribed now, its departure
/// (`updated_ms`). The ledger keeps every earlier one; an erased person's rows are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListDay {
    pub list: String,
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub confirmed: i64,
    pub left: i64,
}

/// Why an address is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuppressReason {
    /// The person left the list (per list).
    Unsubscribe,
    /// The address's server refused it permanently (every list).
    Bounce,
    /// The person reported a message as spam (every list).
    Complaint,
}

impl SuppressReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsubscribe => "unsubscribe",
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Unsubscribe, Self::Bounce, Self::Complaint]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// The list a suppression for every list is filed under.
pub const EVERY_LIST: &str = "*";

/// One suppression: the address only as its keyed lookup hash, so it outlives the
/// person's erasure without naming them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub address: LookupHash,
    /// A list, or [`EVERY_LIST`].
    pub list: String,
    pub reason: SuppressReason,
    pub created_ms: i64,
}

/// A campaign's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignStatus {
    Draft,
    /// Recipients queued; the sender works through them.
    Sending,
    /// Every queued message reached a final status.
    Sent,
    Cancelled,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Sending, Self::Sent, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A campaign as stored. Templates are the operator's text, rendered per message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub list: String,
    /// A segment of the list's purpose to intersect with the list, or the list alone.
    pub segment: Option<String>,
    pub subject_line: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub status: CampaignStatus,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// A campaign to create (the store assigns its id).
#[derive(Clone, Debug)]
pub struct NewCampaign {
    pub name: String,
    pub list: String,
    pub segment: Option<String>,
    pub subject_line: String,
    pub text_body: String,
    pub html_body: Option<String>,
    pub created_ms: i64,
}

/// Where one message of a campaign stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for its turn (or, after a temporary failure, for `next_ms`).
    Queued,
    /// The body has reached the SMTP server and the final dot is about to be sent: from
    /// here on the message counts as sent and is never sent again, crash or not.
    Committing,
    /// The server accepted it.
    Sent,
    /// The server refused it permanently (the address is suppressed).
    Bounced,
    /// Given up after too many temporary failures.
    Failed,
    /// Not sent: the person withdrew, left the list or is suppressed by the time their
    /// turn came.
    Skipped,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 6] = [
        Self::Queued,
        Self::Committing,
        Self::Sent,
        Self::Bounced,
        Self::Failed,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Committing => "committing",
            Self::Sent => "sent",
            Self::Bounced => "bounced",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the message is done with (nothing will send it).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued)
    }
}

/// One message of a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    pub campaign: i64,
    pub subject: SubjectId,
    pub status: MessageStatus,
    pub attempts: u32,
    pub next_ms: i64,
    pub updated_ms: i64,
    /// The last SMTP reply or reason, without personal data.
    pub detail: Option<String>,
}

/// A status change of one message, written by the sender.
#[derive(Clone, Debug)]
pub struct MessageUpdate {
    pub campaign: i64,
    pub subject: SubjectId,
    /// Only rows in this status change (a row another node already moved on is left
    /// alone).
    pub from: MessageStatus,
    pub to: MessageStatus,
    pub attempts: u32,
    pub next_ms: i64,
    pub detail: Option<String>,
    pub at: UnixMillis,
}

/// Messages of one campaign per status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    pub campaign: i64,
    pub counts: Vec<(MessageStatus, i64)>,
    /// Recipients who left the list through this campaign's unsubscribe link.
    pub unsubscribed: i64,
}

impl CampaignCounts {
    pub fn get(&self, s: MessageStatus) -> i64 {
        self.counts
            .iter()
            .find(|(k, _)| *k == s)
            .map_or(0, |(_, n)| *n)
    }
}

/// The email side of a store (`Store::email`): reads and the small writes beside the
/// consent writer. Subscriptions change only through consent commands.
#[async_trait::async_trait]
pub trait EmailStore: Send + Sync {
    /// A person's subscriptions, by list.
    async fn subscriptions(&self, subject: SubjectId) -> Result<Vec<Subscription>, StoreError>;
    /// Subscriptions per list and status.
    async fn list_counts(&self) -> Result<Vec<ListCounts>, StoreError>;
    /// Confirmations and departures per list and UTC day at or after `since_ms`
    /// (see [`ListDay`]), ordered by list and day; days with neither are left out.
    async fn list_activity(&self, since_ms: i64) -> Result<Vec<ListDay>, StoreError>;
    /// Confirmed members of `list` after `after` (in subject order), at most `limit`.
    async fn list_members(
        &self,
        list: &str,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<SubjectId>, StoreError>;
    /// Deletes pending subscriptions last asked for before `before_ms` (nothing was
    /// consented, so nothing is recorded); returns their subjects, once each, so that
    /// a subject made only for such a request can be erased
    /// ([`crate::Erasure::only_if_abandoned`]).
    async fn expire_pending(&self, before_ms: i64) -> Result<Vec<SubjectId>, StoreError>;
    /// Adds a suppression (an existing one for the address and list stays as it was);
    /// whether it was new.
    async fn suppress(&self, s: Suppression) -> Result<bool, StoreError>;
    /// Every suppression of one address.
    async fn suppressions_of(&self, address: LookupHash) -> Result<Vec<Suppression>, StoreError>;
    /// Suppressions per reason.
    async fn suppression_counts(&self) -> Result<Vec<(SuppressReason, i64)>, StoreError>;
    async fn create_campaign(&self, c: NewCampaign) -> Result<i64, StoreError>;
    /// Campaigns, newest first.
    async fn campaigns(&self) -> Result<Vec<Campaign>, StoreError>;
    async fn campaign(&self, id: i64) -> Result<Option<Campaign>, StoreError>;
    /// Moves a campaign from `from` to `to`; false when it was not in `from`.
    async fn set_campaign_status(
        &self,
        id: i64,
        from: CampaignStatus,
        to: CampaignStatus,
        at: UnixMillis,
    ) -> Result<bool, StoreError>;
    /// Queues a message of `campaign` for each subject not queued for it yet, in one
    /// transaction; returns how many were new.
    async fn enqueue(
        &self,
        campaign: i64,
        subjects: Vec<SubjectId>,
        at: UnixMillis,
    ) -> Result<u64, StoreError>;
    /// Queued messages due at `now` of campaigns being sent (or cancelled, so that
    /// their messages are skipped), oldest first. A draft's messages wait: a campaign
    /// is queued page by page before it starts.
    async fn due_messages(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError>;
    /// Applies status changes in one durable transaction; for each, whether the row was
    /// still in its `from` status (and so changed).
    async fn update_messages(&self, updates: Vec<MessageUpdate>) -> Result<Vec<bool>, StoreError>;
    /// Messages per campaign and status.
    async fn campaign_counts(&self) -> Result<Vec<CampaignCounts>, StoreError>;
    /// One campaign's messages after `after` (in subject order), at most `limit`.
    async fn campaign_messages(
        &self,
        campaign: i64,
        after: Option<SubjectId>,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError>;
    /// How many of a campaign's messages are still queued.
    async fn open_messages(&self, campaign: i64) -> Result<i64, StoreError>;
}

/// A page size as SQL's `LIMIT` takes it.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A page's lower bound in subject order: empty (before every id) for the first page.
pub(crate) fn after_bytes(after: Option<SubjectId>) -> Vec<u8> {
    after.map_or_else(Vec::new, |s| s.as_bytes().to_vec())
}

/// Adds `(campaign, unsubscribed)` rows to counts per campaign.
pub(crate) fn add_unsubscribed(
    counts: &mut [CampaignCounts],
    rows: impl IntoIterator<Item = (i64, i64)>,
) {
    for (campaign, n) in rows {
        if let Some(c) = counts.iter_mut().find(|c| c.campaign == campaign) {
            c.unsubscribed = n;
        }
    }
}

/// Folds `(campaign, status, count)` rows into counts per campaign.
pub(crate) fn fold_campaign_counts(
    rows: impl IntoIterator<Item = (i64, MessageStatus, i64)>,
) -> Vec<CampaignCounts> {
    let mut out: Vec<CampaignCounts> = Vec::new();
    for (campaign, status, n) in rows {
        match out.last_mut() {
            Some(c) if c.campaign == campaign => c.counts.push((status, n)),
            _ => out.push(CampaignCounts {
                campaign,
                counts: vec![(status, n)],
                unsubscribed: 0,
            }),
        }
    }
    out
}

/// Folds `(list, day, confirmations)` and `(list, day, departures)` rows into one
/// [`ListDay`] per list and day, ordered by list and day.
pub(crate) fn fold_list_activity(
    confirmed: impl IntoIterator<Item = (String, i64, i64)>,
    left: impl IntoIterator<Item = (String, i64, i64)>,
) -> Vec<ListDay> {
    let mut days: std::collections::BTreeMap<(String, i64), (i64, i64)> = Default::default();
    for (list, day, n) in confirmed {
        days.entry((list, day)).or_default().0 += n;
    }
    for (list, day, n) in left {
        days.entry((list, day)).or_default().1 += n;
    }
    days.into_iter()
        .map(|((list, day), (confirmed, left))| ListDay {
            list,
            day,
            confirmed,
            left,
        })
        .collect()
}

/// Folds `(list, status, count, ever confirmed)` rows into counts per list.
pub(crate) fn fold_list_counts(
    rows: impl IntoIterator<Item = (String, SubStatus, i64, i64)>,
) -> Vec<ListCounts> {
    let mut out: Vec<ListCounts> = Vec::new();
    for (list, status, n, ever) in rows {
        if out.last().is_none_or(|c| c.list != list) {
            out.push(ListCounts {
                list: list.clone(),
                ..ListCounts::default()
            });
        }
        if let Some(c) = out.last_mut() {
            c.ever_confirmed += ever;
            match status {
                SubStatus::Pending => c.pending = n,
                SubStatus::Confirmed => c.confirmed = n,
                SubStatus::Unsubscribed => c.unsubscribed = n,
            }
        }
    }
    out
}
