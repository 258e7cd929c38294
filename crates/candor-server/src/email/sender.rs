//! The sender (issue 16): campaign messages from the durable queue, and the
//! transactional outbox (confirmations, sign-in links), over SMTP.
//!
//! **Never twice.** A campaign message goes out in two phases (`candor-mail`): the
//! envelope and body are transmitted, then the queue row is moved `queued →
//! committing` durably, and only then is the final dot sent, which is when the SMTP
//! server takes the message. A crash before the move leaves the row queued and the
//! server discards the unfinished message; a crash after it leaves the row
//! `committing`, which is never sent again. The move is conditional on the row still
//! being queued, so when two nodes race for a message only one sends the dot; the
//! other abandons its SMTP transaction. What remains is the moment between the move's
//! commit and the dot's write (one system call): a crash there loses that one message
//! rather than doubling it. Moves of all connections are written together
//! ([`Committer`]): one transaction (one fsync) per round, not per message.
//!
//! **Each message is decided just before it goes out.** The campaign is still
//! sending, the person is a confirmed member of the list, still grants the list's
//! purpose (the consent index, as committed now), is still in the campaign's segment,
//! and the address is not suppressed; otherwise the message is skipped.
//!
//! **Failures.** A temporary failure (4xx, a lost connection, a timeout) before the dot
//! requeues the message with exponential backoff, up to `max_attempts` (then
//! `failed`); a permanent refusal of the recipient (5xx to RCPT or to the dot) is a hard
//! bounce: the message is `bounced` and the address suppressed for every list. A 4xx
//! to the dot means the server did not take it: the row goes back from `committing`
//! to `queued`. The sender stays under `rate_per_second` across its connections.

use super::render::{allowed_fields, Renderer, Templates};
use super::{Mail, Transactional};
use crate::config::email::ListSpec;
use crate::state::AppState;
use candor_core::crypto::LookupHash;
use candor_core::{SubjectId, UnixMillis};
use candor_mail::{compose, Connection, Draft, EmailAddress, Envelope, SmtpError};
use candor_store::email::{
    Campaign, CampaignStatus, MessageStatus, MessageUpdate, QueuedMessage, SubStatus,
    SuppressReason, Suppression, EVERY_LIST,
};
use candor_store::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Mutex};

/// Messages read from the queue per round.
const ROUND: usize = 256;

/// Starts the sender's tasks; they end when `stop` turns true.
pub fn spawn(
    st: AppState,
    mail: Arc<Mail>,
    outbox: mpsc::Receiver<Transactional>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (commit_tx, commit_rx) = mpsc::channel(1024);
    let committer = tokio::spawn(Committer::run(st.clone(), commit_rx));
    let pacer = Arc::new(Pacer::new(mail.settings.rate_per_second));
    let transactional = tokio::spawn(transactional(
        mail.clone(),
        outbox,
        pacer.clone(),
        stop.clone(),
    ));
    let campaigns = tokio::spawn(campaigns(st, mail, commit_tx, pacer, stop));
    vec![committer, transactional, campaigns]
}

/// Spaces sends to stay under a rate across every connection.
struct Pacer {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Writes the queue's status changes of every connection together: each round's
/// changes in one transaction.
struct Committer;

type CommitJob = (MessageUpdate, oneshot::Sender<Result<bool, StoreError>>);

impl Committer {
    async fn run(st: AppState, mut rx: mpsc::Receiver<CommitJob>) {
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < 512 {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let (updates, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            match st.store.email().update_messages(updates).await {
                Ok(moved) => {
                    for (r, m) in replies.into_iter().zip(moved) {
                        let _ = r.send(Ok(m));
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    for r in replies {
                        let _ = r.send(Err(StoreError::Database(text.clone())));
                    }
                }
            }
        }
    }
}

async fn update(commit: &mpsc::Sender<CommitJob>, u: MessageUpdate) -> Result<bool, StoreError> {
    let (tx, rx) = oneshot::channel();
    commit.send((u, tx)).await.map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

/// Status changes handed to the committer whose durability nothing waits for until
/// the round ends: every change but the move to `committing`, which gates the dot.
/// A connection goes on to its next message meanwhile, so a message costs one commit
/// wait, not two. A crash before they are written leaves rows `queued` (sent again
/// later: nothing of them reached a server) or `committing` (counted as sent, never
/// sent twice), as without deferral.
type Later = Vec<oneshot::Receiver<Result<bool, StoreError>>>;

async fn record(commit: &mpsc::Sender<CommitJob>, u: MessageUpdate, later: &mut Later) {
    let (tx, rx) = oneshot::channel();
    if commit.send((u, tx)).await.is_ok() {
        later.push(rx);
    }
}

/// Waits until the deferred changes are written: before a round's campaigns are
/// checked for completion, so that a message going back to the queue is seen.
async fn written(later: Later) {
    for r in later {
        if let Ok(Err(e)) = r.await {
            tracing::warn!(error = %e, "recording a message's status failed");
        }
    }
}

/// Sends transactional mails one at a time on a connection kept open between them.
async fn transactional(
    mail: Arc<Mail>,
    mut outbox: mpsc::Receiver<Transactional>,
    pacer: Arc<Pacer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn: Option<Connection> = None;
    loop {
        let m = tokio::select! {
            m = outbox.recv() => match m { Some(m) => m, None => return },
            _ = stop.changed() => return,
        };
        let mut delay = Duration::from_millis(200);
        let mut done = false;
        for _ in 0..4 {
            pacer.wait().await;
            match send_transactional(&mail, &mut conn, &m).await {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    conn = None;
                    tracing::warn!(kind = m.kind, error = %e, "transactional mail not sent");
                    if e.is_permanent() {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
        let counter = if done {
            &mail.transactional_sent
        } else {
            &mail.transactional_failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn connection<'a>(
    mail: &Mail,
    conn: &'a mut Option<Connection>,
) -> Result<&'a mut Connection, SmtpError> {
    if conn.as_ref().is_some_and(|c| !c.is_usable()) {
        *conn = None;
    }
    if conn.is_none() {
        *conn = Some(Connection::open(&mail.settings.smtp).await?);
    }
    conn.as_mut()
        .ok_or_else(|| SmtpError::Protocol("no connection".into()))
}

async fn send_transactional(
    mail: &Mail,
    conn: &mut Option<Connection>,
    m: &Transactional,
) -> Result<(), SmtpError> {
    let draft = Draft {
        from: mail.settings.from.clone(),
        from_name: mail.settings.from_name.clone(),
        to: m.to.clone(),
        subject: m.subject_line.clone(),
        text: m.text.clone(),
        html: None,
        message_id: format!(
            "t.{}@{}",
            uuid::Uuid::new_v4().simple(),
            mail.settings.from.domain()
        ),
        headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
    };
    let body = compose(&draft, std::time::SystemTime::now())
        .map_err(|e| SmtpError::Protocol(e.to_string()))?;
    let c = connection(mail, conn).await?;
    let pending = c
        .begin(
            &Envelope {
                from: mail.settings.from.clone(),
                to: m.to.clone(),
            },
            &body,
        )
        .await?;
    let reply = pending.commit().await?;
    if reply.is_positive() {
        Ok(())
    } else {
        Err(SmtpError::Rejected {
            stage: candor_mail::Stage::Commit,
            reply,
        })
    }
}

/// The campaign loop: a round of due messages over the connections, then wait for
/// more (a wake, a retry coming due, or a second).
async fn campaigns(
    st: AppState,
    mail: Arc<Mail>,
    commit: mpsc::Sender<CommitJob>,
    pacer: Arc<Pacer>,
    mut stop: watch::Receiver<bool>,
) {
    let conns: Vec<Arc<Mutex<Option<Connection>>>> = (0..mail.settings.connections)
        .map(|_| Arc::new(Mutex::new(None)))
        .collect();
    loop {
        if *stop.borrow() {
            return;
        }
        let due = match st.store.email().due_messages(st.now(), ROUND).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading the send queue failed");
                Vec::new()
            }
        };
        if due.is_empty() {
            tokio::select! {
                _ = mail.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let round = Round::prepare(&st, &mail, &due).await;
        let round = Arc::new(round);
        let mut due = due;
        due.reverse();
        let rx: Shared = Arc::new(Mutex::new(due));
        let mut workers = Vec::new();
        for c in &conns {
            let (st, mail, commit, pacer, round, rx, c, stop) = (
                st.clone(),
                mail.clone(),
                commit.clone(),
                pacer.clone(),
                round.clone(),
                rx.clone(),
                c.clone(),
                stop.clone(),
            );
            workers.push(tokio::spawn(async move {
                let mut conn = c.lock().await;
                let mut later = Later::new();
                // A stop is seen between messages, never inside one.
                while !*stop.borrow() {
                    let Some(m) = next(&rx).await else { break };
                    one(
                        &st, &mail, &commit, &pacer, &round, &mut conn, m, &mut later,
                    )
                    .await;
                }
                written(later).await;
            }));
        }
        for w in workers {
            let _ = w.await;
        }
        finish_campaigns(&st, round.campaigns.keys().copied()).await;
    }
}

/// A shared queue of one round's messages (a mutex over a vector: the rounds are small).
type Shared = Arc<Mutex<Vec<QueuedMessage>>>;

async fn next(q: &Shared) -> Option<QueuedMessage> {
    q.lock().await.pop()
}

/// What one round needs about its campaigns, read once.
struct Round {
    campaigns: HashMap<i64, Option<(Campaign, ListSpec, Vec<String>)>>,
}

impl Round {
    async fn prepare(st: &AppState, mail: &Mail, due: &[QueuedMessage]) -> Self {
        let mut campaigns = HashMap::new();
        for m in due {
            if campaigns.contains_key(&m.campaign) {
                continue;
            }
            let c = st.store.email().campaign(m.campaign).await.ok().flatten();
            let entry = c.and_then(|c| {
                let list = mail.settings.list(&c.list)?.clone();
                let allowed = allowed_fields(&st.settings.fields, &list);
                Some((c, list, allowed))
            });
            campaigns.insert(m.campaign, entry);
        }
        Self { campaigns }
    }
}

/// Why a message is not sent (recorded in its row's `detail`).
async fn ineligible(
    st: &AppState,
    campaign: &Campaign,
    list: &ListSpec,
    subject: SubjectId,
    hash: &LookupHash,
) -> Result<Option<&'static str>, StoreError> {
    if campaign.status != CampaignStatus::Sending {
        return Ok(Some("campaign not sending"));
    }
    let bit = st.catalog.purpose(&list.purpose).map(|p| p.bit);
    if !bit.is_some_and(|b| st.store.index().granted(&subject).contains(b)) {
        return Ok(Some("consent not given"));
    }
    let subs = st.store.email().subscriptions(subject).await?;
    if !subs
        .iter()
        .any(|s| s.list == list.name && s.status == SubStatus::Confirmed)
    {
        return Ok(Some("not subscribed"));
    }
    if let Some(seg) = &campaign.segment {
        if st.audiences.is_member(st, seg, &subject) != Some(true) {
            return Ok(Some("not in segment"));
        }
    }
    let suppressed = st.store.email().suppressions_of(*hash).await?;
    if suppressed
        .iter()
        .any(|s| s.list == list.name || s.list == EVERY_LIST)
    {
        return Ok(Some("suppressed"));
    }
    Ok(None)
}

fn backoff(mail: &Mail, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(12);
    (mail.settings.retry_base * 2u32.pow(exp)).min(Duration::from_secs(6 * 3600))
}

fn moved(
    m: &QueuedMessage,
    from: MessageStatus,
    to: MessageStatus,
    at: UnixMillis,
) -> MessageUpdate {
    MessageUpdate {
        campaign: m.campaign,
        subject: m.subject,
        from,
        to,
        attempts: m.attempts,
        next_ms: m.next_ms,
        detail: None,
        at,
    }
}

/// One message: decide, render, transmit, move to committing, send the dot, record.
#[allow(clippy::too_many_arguments)]
async fn one(
    st: &AppState,
    mail: &Mail,
    commit: &mpsc::Sender<CommitJob>,
    pacer: &Pacer,
    round: &Round,
    conn: &mut Option<Connection>,
    m: QueuedMessage,
    later: &mut Later,
) {
    let now = st.now();
    let skip = |detail: &str| {
        let mut u = moved(&m, MessageStatus::Queued, MessageStatus::Skipped, now);
        u.detail = Some(detail.to_owned());
        u
    };
    let Some(Some((campaign, list, allowed))) = round.campaigns.get(&m.campaign) else {
        record(commit, skip("campaign or list gone"), later).await;
        return;
    };
    let address = match super::address_of(st, m.subject).await {
        Ok(Some((a, ident))) => Some((a, ident.hash)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading a recipient failed");
            return;
        }
    };
    let Some((address, hash)) = address else {
        record(commit, skip("no address"), later).await;
        return;
    };
    match ineligible(st, campaign, list, m.subject, &hash).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            record(commit, skip(why), later).await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "checking a recipient failed");
            return;
        }
    }
    let body = match render(st, mail, campaign, list, allowed, m.subject, &address).await {
        Ok(b) => b,
        Err(detail) => {
            let mut u = moved(&m, MessageStatus::Queued, MessageStatus::Failed, now);
            u.detail = Some(detail);
            record(commit, u, later).await;
            return;
        }
    };
    pacer.wait().await;
    let envelope = Envelope {
        from: mail.settings.from.clone(),
        to: address,
    };
    let c = match connection(mail, conn).await {
        Ok(c) => c,
        Err(e) => {
            *conn = None;
            retry(st, mail, commit, &m, MessageStatus::Queued, &e, later).await;
            return;
        }
    };
    let failed = {
        let begun = c.begin(&envelope, &body).await;
        match begun {
            Ok(pending) => {
                commit_one(st, mail, commit, &m, hash, pending, later).await;
                None
            }
            Err(e) => Some(e),
        }
    };
    let Some(e) = failed else {
        if !c.is_usable() {
            *conn = None;
        }
        return;
    };
    if c.is_usable() {
        if c.reset().await.is_err() {
            *conn = None;
        }
    } else {
        *conn = None;
    }
    failed_before_dot(st, mail, commit, &m, hash, &e, later).await;
}

/// The body is with the server: move the row to committing, then send the dot.
async fn commit_one(
    st: &AppState,
    mail: &Mail,
    commit: &mpsc::Sender<CommitJob>,
    m: &QueuedMessage,
    hash: LookupHash,
    pending: candor_mail::Pending<'_>,
    later: &mut Later,
) {
    // The point of no return: once this is durable the message counts as sent.
    let mut u = moved(
        m,
        MessageStatus::Queued,
        MessageStatus::Committing,
        st.now(),
    );
    u.attempts = m.attempts + 1;
    match update(commit, u).await {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            // Another node took it, or the move is not known to be durable: abandon
            // the SMTP transaction (dropping it closes the connection, and the server
            // discards a message without its dot).
            drop(pending);
            return;
        }
    }
    let outcome = pending.commit().await;
    let at = st.now();
    let mut done = moved(m, MessageStatus::Committing, MessageStatus::Sent, at);
    done.attempts = m.attempts + 1;
    match outcome {
        Ok(reply) if reply.is_positive() => {}
        Ok(reply) if reply.is_permanent() => {
            done.to = MessageStatus::Bounced;
            done.detail = Some(format!("{} at end of data", reply.code));
            bounce(st, hash).await;
        }
        Ok(reply) => {
            // Not taken: back to the queue.
            done.to = MessageStatus::Queued;
            done.next_ms = at.0 + backoff(mail, done.attempts).as_millis() as i64;
            done.detail = Some(format!("{} at end of data", reply.code));
            if done.attempts >= mail.settings.max_attempts {
                done.to = MessageStatus::Failed;
            }
        }
        Err(e) => {
            // The dot was written; whether the server took it is unknown. It counts
            // as sent (never twice), marked so.
            done.detail = Some(format!("outcome unknown: {}", short(&e)));
        }
    }
    // If this is lost, the row stays committing: counted as sent.
    record(commit, done, later).await;
}

fn short(e: &SmtpError) -> String {
    let mut s = e.to_string();
    s.truncate(200);
    s
}

async fn bounce(st: &AppState, hash: LookupHash) {
    let r = st
        .store
        .email()
        .suppress(Suppression {
            address: hash,
            list: EVERY_LIST.into(),
            reason: SuppressReason::Bounce,
            created_ms: st.now_ms(),
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "suppressing a bounced address failed");
    }
}

/// A failure before the dot: nothing was delivered.
async fn failed_before_dot(
    st: &AppState,
    mail: &Mail,
    commit: &mpsc::Sender<CommitJob>,
    m: &QueuedMessage,
    hash: LookupHash,
    e: &SmtpError,
    later: &mut Later,
) {
    if let SmtpError::Rejected { stage, reply } = e {
        if reply.is_permanent()
            && matches!(stage, candor_mail::Stage::RcptTo | candor_mail::Stage::Data)
        {
            let mut u = moved(m, MessageStatus::Queued, MessageStatus::Bounced, st.now());
            u.attempts = m.attempts + 1;
            u.detail = Some(format!("{} to {stage:?}", reply.code));
            record(commit, u, later).await;
            bounce(st, hash).await;
            return;
        }
    }
    retry(st, mail, commit, m, MessageStatus::Queued, e, later).await;
}

async fn retry(
    st: &AppState,
    mail: &Mail,
    commit: &mpsc::Sender<CommitJob>,
    m: &QueuedMessage,
    from: MessageStatus,
    e: &SmtpError,
    later: &mut Later,
) {
    let now = st.now();
    let mut u = moved(m, from, MessageStatus::Queued, now);
    u.attempts = m.attempts + 1;
    u.next_ms = now.0 + backoff(mail, u.attempts).as_millis() as i64;
    u.detail = Some(short(e));
    if u.attempts >= mail.settings.max_attempts {
        u.to = MessageStatus::Failed;
    }
    record(commit, u, later).await;
}

/// The message's bytes for one recipient, or why it cannot be made.
async fn render(
    st: &AppState,
    mail: &Mail,
    campaign: &Campaign,
    list: &ListSpec,
    allowed: &[String],
    subject: SubjectId,
    to: &EmailAddress,
) -> Result<Vec<u8>, String> {
    let mut fields: BTreeMap<String, String> =
        allowed.iter().map(|f| (f.clone(), String::new())).collect();
    for f in st.store.fields(subject).await.map_err(|e| e.to_string())? {
        if let Some(v) = fields.get_mut(f.field.as_str()) {
            *v = f.value.expose().clone();
        }
    }
    let token = mail
        .keys
        .mint_unsubscribe(subject, &list.name, Some(campaign.id));
    let unsubscribe = mail.url(&format!("/email/unsubscribe?t={token}"));
    let templates = Templates {
        subject_line: &campaign.subject_line,
        text: &campaign.text_body,
        html: campaign.html_body.as_deref(),
    };
    let out = Renderer::new(&templates)
        .and_then(|r| r.render(list, &fields, &unsubscribe))
        .map_err(|e| e.to_string())?;
    let mut list_unsubscribe = format!("<{unsubscribe}>");
    if let Some(m) = &mail.settings.unsubscribe_mailto {
        list_unsubscribe.push_str(&format!(", <mailto:{m}?subject=unsubscribe>"));
    }
    let draft = Draft {
        from: mail.settings.from.clone(),
        from_name: mail.settings.from_name.clone(),
        to: to.clone(),
        subject: out.subject_line,
        text: out.text,
        html: out.html,
        message_id: message_id(campaign.id, subject, &mail.settings.from),
        headers: vec![
            ("List-Unsubscribe".into(), list_unsubscribe),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
            ("X-Candor-Campaign".into(), campaign.id.to_string()),
        ],
    };
    compose(&draft, std::time::SystemTime::now()).map_err(|e| e.to_string())
}

/// The same for every attempt at one message, so a receiving system that
/// de-duplicates by Message-ID sees one message.
pub fn message_id(campaign: i64, subject: SubjectId, from: &EmailAddress) -> String {
    format!("c{campaign}.{subject}@{}", from.domain())
}

/// Marks campaigns whose messages are all decided as sent.
async fn finish_campaigns(st: &AppState, ids: impl Iterator<Item = i64>) {
    for id in ids {
        if let Ok(0) = st.store.email().open_messages(id).await {
            let _ = st
                .store
                .email()
                .set_campaign_status(id, CampaignStatus::Sending, CampaignStatus::Sent, st.now())
                .await;
        }
    }
}
