//! Keeping every node's caches in step: `NOTIFY` on commit, `LISTEN` on a dedicated
//! connection, and a periodic full resync as the fallback.
//!
//! Every transaction that changes a subject's consent or links an identifier sends
//! `NOTIFY candor_changes, '<subject hex>,<subject hex>,...'` inside the transaction,
//! so the notification is delivered only if it commits, and after it commits. Each
//! store runs one task holding a LISTEN connection; it reloads the named subjects'
//! granted purposes and identities from the database into this node's caches (the
//! payload says only *who* changed, never what: the database is the truth).
//!
//! A notification can be missed while the connection is down, so after every
//! (re)connect, and every `resync_interval`, the task reloads everything. Reloads and
//! resyncs run on this one task, in order, and read committed state: a notification
//! for a commit made after a resync's snapshot is handled after that resync, so the
//! caches converge to the committed state. (A stale index costs nothing unsafe: the
//! gate on ingestion re-checks consent in the database, see `ingest`.)

use super::{cache, connect, sql, Shared};
use crate::StoreError;
use candor_core::idhash::IdSet;
use candor_core::SubjectId;
use deadpool_postgres::GenericClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Config};

pub const CHANNEL: &str = "candor_changes";

/// A NOTIFY payload must stay under 8000 bytes; 33 bytes per subject.
const SUBJECTS_PER_PAYLOAD: usize = 200;

/// How long to wait before reconnecting a lost LISTEN connection.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// Queues a notification naming `subjects`, delivered when the transaction commits.
pub async fn notify<C: GenericClient>(
    tx: &C,
    subjects: &[SubjectId],
) -> Result<(), tokio_postgres::Error> {
    for chunk in subjects.chunks(SUBJECTS_PER_PAYLOAD) {
        let payload = chunk
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        sql::execute(tx, "SELECT pg_notify('candor_changes', $1)", &[&payload]).await?;
    }
    Ok(())
}

/// Prefix of a payload naming subjects whose volunteered fields changed (the caches
/// keep no fields: these go to `Store::fields_changed`'s listeners).
const FIELDS: &str = "f:";

/// Queues a notification that `subjects`' fields changed, delivered on commit.
pub async fn notify_fields<C: GenericClient>(
    tx: &C,
    subjects: &[SubjectId],
) -> Result<(), tokio_postgres::Error> {
    for chunk in subjects.chunks(SUBJECTS_PER_PAYLOAD) {
        let payload = chunk
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        sql::execute(
            tx,
            "SELECT pg_notify('candor_changes', $1)",
            &[&format!("{FIELDS}{payload}")],
        )
        .await?;
    }
    Ok(())
}

pub async fn run(
    shared: Arc<Shared>,
    config: Config,
    resync: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match session(&shared, &config, resync, &mut stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "cache sync connection lost; reconnecting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One connection's life. Returns `Ok` when asked to stop, `Err` when the connection
/// failed (the caller reconnects, which resyncs).
async fn session(
    shared: &Shared,
    config: &Config,
    resync: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), StoreError> {
    // Named, so that an operator (or a test) can tell it from the pool's connections.
    let mut config = config.clone();
    config.application_name("candor-listen");
    let (client, mut conn) = connect::connect(&config).await?;
    let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
    // The connection must be polled for queries to make progress; this task does it
    // and forwards the notifications. It ends when the connection does.
    let driver = tokio::spawn(async move {
        while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %connect::describe_error(&e), "cache sync connection failed");
                    break;
                }
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // After LISTEN, so that nothing committed from here on can be missed.
        cache::full_resync(shared, &client).await?;
        // Field changes made while no connection listened are unknown: reload them all.
        shared.caches.announce_fields(crate::FieldsChanged::All);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return Ok(());
                    }
                }
                msg = nrx.recv() => {
                    let Some(first) = msg else {
                        return Err(StoreError::Database("cache sync connection closed".into()));
                    };
                    let mut subjects: IdSet<SubjectId> = IdSet::default();
                    let mut fields: IdSet<SubjectId> = IdSet::default();
                    let mut sort = |p: &str| match p.strip_prefix(FIELDS) {
                        Some(rest) => parse(rest, &mut fields),
                        None => parse(p, &mut subjects),
                    };
                    sort(&first);
                    while let Ok(more) = nrx.try_recv() {
                        sort(&more);
                    }
                    for s in fields {
                        shared.caches.announce_fields(crate::FieldsChanged::Subject(s));
                    }
                    let subjects: Vec<SubjectId> = subjects.into_iter().collect();
                    cache::reload(shared, &client, &subjects).await?;
                }
                _ = tick.tick() => cache::full_resync(shared, &client).await?,
            }
        }
    }
    .await;
    driver.abort();
    result
}

fn parse(payload: &str, into: &mut IdSet<SubjectId>) {
    into.extend(
        payload
            .split(',')
            .filter_map(|s| SubjectId::parse(s.trim()).ok()),
    );
}
