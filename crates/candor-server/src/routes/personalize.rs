//! `POST /v1/personalize` (issue 14): ranked offers for a person and a placement, each
//! with the reasons it was chosen in plain words, built from the data the rule actually
//! used. Without the personalization purpose granted (or for someone unknown) the
//! answer is the placement's non-personalized defaults, and says so.
//!
//! Who may ask is the consent API's rule: a server key for anyone, a subject token for
//! its own user, a browser key for its own anonymous id. A decision that used personal
//! data is written to the person's access log (`purpose` = the personalization purpose,
//! `why` = the offers chosen), where the person sees it on their own page.

use super::consent::actor;
use super::segments::{reason_dto, ReasonDto};
use crate::body::{parse_json, read_text};
use crate::error::{ApiError, ApiResult, Code};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use candor_core::PurposeSet;
use candor_store::Access;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whom and where: the person (as the consent API names them) and the placement.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"userId": "user-42", "placement": "home", "limit": 3}))]
struct PersonalizeBody {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    /// The placement's id (1 to 64 characters), as the operator's offers name it.
    #[schema(required = true, nullable = false, min_length = 1, max_length = 64)]
    placement: Option<String>,
    /// At most this many offers (1 to 20, default 3).
    #[schema(minimum = 1, maximum = 20)]
    limit: Option<usize>,
}

/// The offers chosen for a placement.
#[derive(Serialize, ToSchema)]
pub struct Personalized {
    placement: String,
    /// Whether any offer was chosen from the person's data.
    personalized: bool,
    /// Why the answer is not personalized (`null` when it is).
    note: Option<&'static str>,
    /// The offers, best first.
    items: Vec<OfferDto>,
}

/// One offer, and why it was chosen.
#[derive(Serialize, ToSchema)]
pub struct OfferDto {
    id: String,
    title: String,
    /// Whether it was chosen from the person's data (else it is a default).
    personalized: bool,
    /// The reasons in plain words.
    because: Vec<String>,
    /// The reasons, each with the data it rests on.
    reasons: Vec<ReasonDto>,
}

#[utoipa::path(post, path = "/v1/personalize", tag = "personalization",
    summary = "Offers for a person and a placement",
    description = "Ranked offers for a placement, each with the reasons it was chosen, built from the \
data the rule used. Without the personalization purpose granted (or for someone unknown), the \
placement's non-personalized defaults, and `note` says so. A choice that used personal data is \
written to the person's access log.",
    request_body = PersonalizeBody,
    responses((status = 200, description = "The offers chosen", body = Personalized)))]
pub async fn personalize(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Personalized>> {
    let actor = actor(&st, &headers)?;
    let text = read_text(&headers, body, 4096, Code::InvalidRequest).await?;
    let b: PersonalizeBody = parse_json(&text)?;
    let limit = b.limit.unwrap_or(3);
    if !(1..=20).contains(&limit) {
        return Err(ApiError::new(Code::InvalidRequest, "limit is 1 to 20"));
    }
    let named = crate::pipeline::consent::identities(
        &st.master,
        &actor,
        b.user_id.as_deref(),
        b.anonymous_id.as_deref(),
    )?;
    let subject = crate::pipeline::consent::resolve(&st, &named)?;
    // Checked after who is asking, so a credential that may not ask learns nothing more.
    let placement = b
        .placement
        .filter(|p| !p.is_empty() && p.len() <= 64)
        .ok_or_else(|| ApiError::new(Code::InvalidRequest, "placement: 1 to 64 characters"))?;
    let Some(offers) = &st.audiences.offers else {
        return Err(ApiError::new(
            Code::UnknownPlacement,
            "this operator has no offers configured",
        ));
    };
    let bit = crate::audiences::personalization_bit(&st);
    let granted = subject.map_or(PurposeSet::EMPTY, |s| st.store.index().granted(&s));
    let personal = matches!((subject, bit), (Some(_), Some(b)) if granted.contains(b));
    if personal {
        st.audiences.catch_up(&st).await?;
    }
    let engine = st.audiences.engine();
    let decision = offers
        .decide(
            &engine,
            &placement,
            subject.as_ref(),
            bit.unwrap_or(u8::MAX),
            granted,
            &st.settings.fields,
            limit,
        )
        .ok_or_else(|| {
            ApiError::new(
                Code::UnknownPlacement,
                format!("no placement {:?}", placement),
            )
        })?;
    let items: Vec<OfferDto> = decision
        .items
        .iter()
        .map(|c| OfferDto {
            id: c.offer.id.clone(),
            title: c.offer.title.clone(),
            personalized: !c.reasons.is_empty(),
            because: c.reasons.iter().map(|r| r.sentence()).collect(),
            reasons: c.reasons.iter().map(reason_dto).collect(),
        })
        .collect();
    let used: Vec<&str> = decision
        .items
        .iter()
        .filter(|c| !c.reasons.is_empty())
        .map(|c| c.offer.id.as_str())
        .collect();
    if let (Some(s), false) = (subject, used.is_empty()) {
        st.store
            .record_access(Access {
                subject: s,
                time_ms: st.now(),
                accessor: "personalization".into(),
                purpose: st.settings.personalization.purpose.to_string(),
                why: format!("chose offers for {placement}: {}", used.join(", ")),
            })
            .await?;
    }
    let note = if decision.personalized {
        None
    } else if personal {
        Some("nothing personal matched: these are the defaults")
    } else {
        Some("not personalized: personalization is not granted (or the person is unknown)")
    };
    Ok(Json(Personalized {
        placement,
        personalized: decision.personalized,
        note,
        items,
    }))
}

/// This module's operations in the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(personalize))]
pub(crate) struct Api;
