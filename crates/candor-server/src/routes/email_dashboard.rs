//! The dashboard's email page (issue 16), `GET /admin/email`: each configured list with
//! its subscribers (confirmed, waiting, left), its confirmation rate and its growth over
//! the last thirty days (a chart of confirmations and departures per day, and the same
//! numbers in a table); each campaign with its messages by status and the people who
//! left its list since it started (a stacked bar chart, and a table); the suppression
//! list by reason and the transactional outbox's counters.
//!
//! | route | role |
//! |---|---|
//! | `GET /admin/email` | an admin session (cookie) |
//!
//! Like the rest of the dashboard: read-only, charts drawn on the server (no script on
//! the page), and figures only: no address or person appears on it.
//!
//! **Unsubscribed per campaign** counts the recipients who left the list through that
//! campaign's own unsubscribe link: the link names the campaign (`email::tokens`), the
//! departure's ledger record names it too, and its queue row is marked
//! (`CampaignCounts::unsubscribed`).

use super::dashboard::session_of;
use crate::charts::{self, CampaignBar};
use crate::pages;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use candor_core::UnixMillis;
use candor_store::email::{CampaignCounts, ListDay, MessageStatus};
use minijinja::context;

/// Days of history the growth charts show (today included).
const GROWTH_DAYS: i64 = 30;
/// Campaigns on the page (newest first); the API lists them all.
const CAMPAIGNS_SHOWN: usize = 12;

/// The message statuses shown, in the order the bars stack them; `committing` (a
/// message whose final SMTP dot is being sent) counts as sent, which it is from then on.
const SHOWN: [(&str, &[MessageStatus]); 5] = [
    ("sent", &[MessageStatus::Sent, MessageStatus::Committing]),
    ("bounced", &[MessageStatus::Bounced]),
    ("failed", &[MessageStatus::Failed]),
    ("skipped", &[MessageStatus::Skipped]),
    ("queued", &[MessageStatus::Queued]),
];

fn percent(n: i64, of: i64) -> Option<String> {
    (of > 0).then(|| format!("{:.1}%", n as f64 * 100.0 / of as f64))
}

fn when(ms: i64) -> String {
    let t = crate::segment::format_time(UnixMillis(ms));
    t.get(..16).unwrap_or(&t).replace('T', " ")
}

/// `GET /admin/email`
#[utoipa::path(get, path = "/admin/email", tag = "pages",
    summary = "The dashboard's email page",
    description = "Each list's subscribers, confirmation rate and 30-day growth; each campaign's messages by status and its unsubscribes; suppressions by reason and the transactional outbox's counters. Figures only, read-only. Without email configured, a page saying so.",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "No session: to the sign-in page",
            headers(("Location" = String, description = "`/admin/login`"))),
        (status = 500, description = "The email figures could not be read", content_type = "text/html", body = String),
    ))]
pub async fn page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(&st, &headers) else {
        return pages::redirect("/admin/login", vec![]);
    };
    let csrf = st.sessions.csrf(session);
    let operator = st.settings.operator.name.clone();
    let Some(mail) = st.mail.clone() else {
        return pages::render(
            StatusCode::OK,
            "email_dashboard.html",
            context! { operator, csrf, disabled => true },
            false,
            vec![],
        );
    };
    match gather(&st, &mail).await {
        Ok(ctx) => pages::render(
            StatusCode::OK,
            "email_dashboard.html",
            context! { operator, csrf, ..ctx },
            false,
            vec![],
        ),
        Err(e) => pages::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            &crate::error::ApiError::from(e).message,
        ),
    }
}

async fn gather(
    st: &AppState,
    mail: &crate::email::Mail,
) -> Result<minijinja::Value, candor_store::StoreError> {
    let email = st.store.email();
    let today = st.now().day();
    let first = today - (GROWTH_DAYS - 1);
    let days: Vec<String> = (first..=today)
        .map(|d| crate::segment::format_time(UnixMillis::day_start(d))[..10].to_owned())
        .collect();
    let counts = email.list_counts().await?;
    let activity = email.list_activity(UnixMillis::day_start(first).0).await?;
    let lists: Vec<_> = mail
        .settings
        .lists
        .iter()
        .map(|l| {
            let c = counts
                .iter()
                .find(|c| c.list == l.name)
                .cloned()
                .unwrap_or_default();
            let mine: Vec<&ListDay> = activity.iter().filter(|d| d.list == l.name).collect();
            let mut points = vec![(0i64, 0i64); days.len()];
            for d in &mine {
                if let Some(p) = usize::try_from(d.day - first)
                    .ok()
                    .and_then(|i| points.get_mut(i))
                {
                    *p = (d.confirmed, d.left);
                }
            }
            let chart = charts::list_growth_chart(&l.name, &days, &points)
                .map_err(|e| tracing::warn!(error = %e, "list growth chart not drawn"))
                .ok();
            let on_record = c.pending + c.confirmed + c.unsubscribed;
            let joined: i64 = points.iter().map(|p| p.0).sum();
            let left: i64 = points.iter().map(|p| p.1).sum();
            context! {
                name => l.name, title => l.title, purpose => l.purpose.as_str(),
                confirmed => c.confirmed, pending => c.pending, unsubscribed => c.unsubscribed,
                ever_confirmed => c.ever_confirmed, on_record,
                rate => percent(c.ever_confirmed, on_record),
                joined, left, net => joined - left, chart,
                history => mine.iter().map(|d| context! {
                    day => days.get(usize::try_from(d.day - first).unwrap_or(usize::MAX)),
                    confirmed => d.confirmed, left => d.left,
                }).collect::<Vec<_>>(),
            }
        })
        .collect();

    let campaigns = email.campaigns().await?;
    let message_counts = email.campaign_counts().await?;
    let mut bars = Vec::new();
    let mut rows = Vec::new();
    for c in campaigns.iter().take(CAMPAIGNS_SHOWN) {
        let counts = message_counts
            .iter()
            .find(|m| m.campaign == c.id)
            .cloned()
            .unwrap_or(CampaignCounts {
                campaign: c.id,
                counts: vec![],
                unsubscribed: 0,
            });
        let messages: Vec<(&'static str, i64)> = SHOWN
            .iter()
            .map(|(name, of)| (*name, of.iter().map(|s| counts.get(*s)).sum()))
            .collect();
        // Recipients who left through this campaign's own unsubscribe link.
        let left = counts.unsubscribed;
        let total: i64 = messages.iter().map(|m| m.1).sum();
        rows.push(context! {
            id => c.id, name => c.name, list => c.list, status => c.status.as_str(),
            started => c.started_ms.map(when), finished => c.finished_ms.map(when),
            messages => messages.iter().map(|m| m.1).collect::<Vec<_>>(),
            total, left => c.started_ms.map(|_| left),
        });
        if total > 0 || left > 0 {
            bars.push(CampaignBar {
                id: c.id,
                messages,
                left,
            });
        }
    }
    let campaigns_chart = if bars.is_empty() {
        None
    } else {
        charts::campaigns_chart(&bars)
            .map_err(|e| tracing::warn!(error = %e, "campaign chart not drawn"))
            .ok()
    };
    let suppressions: Vec<_> = email
        .suppression_counts()
        .await?
        .into_iter()
        .map(|(r, n)| context! { reason => r.as_str(), count => n })
        .collect();
    use std::sync::atomic::Ordering::Relaxed;
    Ok(context! {
        lists, days_shown => GROWTH_DAYS, first_day => days.first(), last_day => days.last(),
        campaigns => rows, campaign_count => campaigns.len(), campaigns_shown => CAMPAIGNS_SHOWN,
        statuses => SHOWN.iter().map(|s| s.0).collect::<Vec<_>>(),
        campaigns_chart, suppressions,
        pending_days => mail.settings.pending_ttl.as_secs() / 86_400,
        outbox => context! {
            sent => mail.transactional_sent.load(Relaxed),
            failed => mail.transactional_failed.load(Relaxed),
        },
    })
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(page))]
pub(crate) struct Api;
