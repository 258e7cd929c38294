//! Campaigns (issue 16): created with templates checked against what the list's
//! purpose may use, previewed, test-sent, and started by fanning out to the list's
//! confirmed members that grant the purpose now (and are in the segment, when one is
//! named). Each message is decided again just before it goes out (`sender`).
//!
//! Starting is resumable: recipients are queued page by page (a subscriber at most
//! once per campaign, by the queue's key), and the campaign becomes `sending` only
//! after the last page, so a crash half-way leaves a draft that starting again
//! completes.

use super::render::{allowed_fields, check, Renderer, Templates};
use super::{Mail, Transactional};
use crate::config::email::ListSpec;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use candor_core::SubjectId;
use candor_mail::EmailAddress;
use candor_store::email::{Campaign, CampaignStatus, NewCampaign};
use std::collections::BTreeMap;

const PAGE: usize = 1000;

/// A campaign as the operator writes it.
#[derive(Clone, Debug)]
pub struct Draft {
    pub name: String,
    pub list: String,
    pub segment: Option<String>,
    pub subject_line: String,
    pub text_body: String,
    pub html_body: Option<String>,
}

fn list<'a>(mail: &'a Mail, name: &str) -> ApiResult<&'a ListSpec> {
    mail.settings.list(name).ok_or_else(|| {
        ApiError::new(
            Code::InvalidRequest,
            format!(
                "list {:?} is not configured ([[email.lists]])",
                name.chars().take(64).collect::<String>()
            ),
        )
    })
}

/// Checks and stores a draft campaign.
pub async fn create(st: &AppState, mail: &Mail, d: Draft) -> ApiResult<i64> {
    if d.name.trim().is_empty() || d.name.len() > 200 {
        return Err(ApiError::new(Code::InvalidRequest, "name: 1 to 200 bytes"));
    }
    let l = list(mail, &d.list)?;
    if let Some(seg) = &d.segment {
        match st.audiences.purpose_of(seg) {
            None => {
                return Err(ApiError::new(
                    Code::InvalidRequest,
                    format!("segment {seg:?} does not exist"),
                ))
            }
            Some(p) if p != l.purpose.as_str() => {
                return Err(ApiError::new(
                    Code::InvalidRequest,
                    format!(
                        "segment {seg:?} belongs to purpose {p}, the list to {}: a campaign may only target a segment of its list's purpose",
                        l.purpose
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let allowed = allowed_fields(&st.settings.fields, l);
    check(
        &Templates {
            subject_line: &d.subject_line,
            text: &d.text_body,
            html: d.html_body.as_deref(),
        },
        l,
        &allowed,
    )
    .map_err(|e| {
        ApiError::new(
            Code::InvalidRequest,
            format!(
                "{e} (templates may use fields.<name> for {}, list.name, list.title, unsubscribe_url)",
                if allowed.is_empty() {
                    "no field".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
        )
    })?;
    Ok(st
        .store
        .email()
        .create_campaign(NewCampaign {
            name: d.name,
            list: d.list,
            segment: d.segment,
            subject_line: d.subject_line,
            text_body: d.text_body,
            html_body: d.html_body,
            created_ms: st.now_ms(),
        })
        .await?)
}

pub async fn get(st: &AppState, id: i64) -> ApiResult<Campaign> {
    st.store
        .email()
        .campaign(id)
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such campaign"))
}

/// What one recipient would get (their volunteered fields, or all empty without one).
pub async fn preview(
    st: &AppState,
    mail: &Mail,
    c: &Campaign,
    subject: Option<SubjectId>,
) -> ApiResult<super::render::Rendered> {
    let l = list(mail, &c.list)?;
    let allowed = allowed_fields(&st.settings.fields, l);
    let mut fields: BTreeMap<String, String> =
        allowed.iter().map(|f| (f.clone(), String::new())).collect();
    if let Some(s) = subject {
        for f in st.store.fields(s).await? {
            if let Some(v) = fields.get_mut(f.field.as_str()) {
                *v = f.value.expose().clone();
            }
        }
    }
    let url = mail.url("/email/unsubscribe?t=preview");
    Renderer::new(&Templates {
        subject_line: &c.subject_line,
        text: &c.text_body,
        html: c.html_body.as_deref(),
    })
    .and_then(|r| r.render(l, &fields, &url))
    .map_err(|e| ApiError::new(Code::InvalidRequest, e.to_string()))
}

/// Sends the preview to an address of the operator's (no list, no queue).
pub async fn test_send(
    st: &AppState,
    mail: &Mail,
    c: &Campaign,
    to: EmailAddress,
) -> ApiResult<()> {
    let r = preview(st, mail, c, None).await?;
    mail.outbox
        .try_send(Transactional {
            to,
            subject_line: format!("[test] {}", r.subject_line),
            text: r.text,
            kind: "test",
        })
        .map_err(|_| ApiError::new(Code::Unavailable, "too many mails waiting; try again"))
}

/// Queues the campaign's recipients and starts sending; returns how many were queued.
pub async fn start(st: &AppState, mail: &Mail, id: i64) -> ApiResult<u64> {
    let c = get(st, id).await?;
    if c.status != CampaignStatus::Draft {
        return Err(ApiError::new(
            Code::Conflict,
            format!("the campaign is {}, not a draft", c.status.as_str()),
        ));
    }
    let l = list(mail, &c.list)?;
    let bit = st
        .catalog
        .purpose(&l.purpose)
        .map(|p| p.bit)
        .ok_or_else(|| ApiError::new(Code::Internal, "the list's purpose is not configured"))?;
    let mut after = None;
    let mut queued = 0;
    loop {
        let page = st.store.email().list_members(&l.name, after, PAGE).await?;
        let Some(last) = page.last().copied() else {
            break;
        };
        after = Some(last);
        let chosen: Vec<SubjectId> = page
            .into_iter()
            .filter(|s| st.store.index().granted(s).contains(bit))
            .filter(|s| match &c.segment {
                Some(seg) => st.audiences.is_member(st, seg, s) == Some(true),
                None => true,
            })
            .collect();
        if !chosen.is_empty() {
            queued += st.store.email().enqueue(id, chosen, st.now()).await?;
        }
    }
    let started = st
        .store
        .email()
        .set_campaign_status(id, CampaignStatus::Draft, CampaignStatus::Sending, st.now())
        .await?;
    if !started {
        return Err(ApiError::new(
            Code::Conflict,
            "the campaign was started or cancelled meanwhile",
        ));
    }
    mail.wake.notify_one();
    Ok(queued)
}

/// Cancels a draft or a campaign being sent: queued messages are skipped when their
/// turn comes (the sender checks the campaign's status for each).
pub async fn cancel(st: &AppState, id: i64) -> ApiResult<()> {
    let c = get(st, id).await?;
    let now = st.now();
    for from in [CampaignStatus::Draft, CampaignStatus::Sending] {
        if c.status == from
            && st
                .store
                .email()
                .set_campaign_status(id, from, CampaignStatus::Cancelled, now)
                .await?
        {
            return Ok(());
        }
    }
    Err(ApiError::new(
        Code::Conflict,
        format!("the campaign is {}", c.status.as_str()),
    ))
}
