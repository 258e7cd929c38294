//! The one table from API error to stable code, type and HTTP status (meilisearch's
//! idea). Clients key on `code`; it never changes meaning once published. Responses
//! are `{"code", "message", "type"}`, plus per-item `errors` where a batch failed.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_store::StoreError;
use serde::Serialize;

/// Declares every API error once: its variant, stable code, type and HTTP status. The
/// enum, the table and the lookup are generated from the one list, so a code without a
/// row cannot exist (the match in `Code::row` is exhaustive by construction).
macro_rules! codes {
    ($($variant:ident => ($code:literal, $kind:literal, $status:literal),)*) => {
        /// Every error the API can answer with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Code {
            $($variant,)*
        }

        /// (code, stable name, type, HTTP status) for each error, in declaration order:
        /// the single source of truth the OpenAPI document and the tests read.
        pub const TABLE: &[(Code, &str, &str, u16)] = &[
            $((Code::$variant, $code, $kind, $status),)*
        ];

        impl Code {
            fn row(self) -> (&'static str, &'static str, u16) {
                match self {
                    $(Code::$variant => ($code, $kind, $status),)*
                }
            }
        }
    };
}

codes! {
    InvalidJson => ("invalid_json", "invalid_request", 400),
    InvalidUtf8 => ("invalid_utf8", "invalid_request", 400),
    InvalidGzip => ("invalid_gzip", "invalid_request", 400),
    UnsupportedEncoding => ("unsupported_encoding", "invalid_request", 415),
    EventTooLarge => ("event_too_large", "invalid_request", 413),
    BatchTooLarge => ("batch_too_large", "invalid_request", 413),
    InvalidMessage => ("invalid_message", "invalid_request", 400),
    InvalidRequest => ("invalid_request", "invalid_request", 400),
    UnknownPurpose => ("unknown_purpose", "invalid_request", 400),
    InvalidConsentString => ("invalid_consent_string", "invalid_request", 400),
    NoticeVersionMismatch => ("notice_version_mismatch", "invalid_request", 409),
    ConsentNotGiven => ("consent_not_given", "invalid_request", 409),
    MissingWriteKey => ("missing_write_key", "auth", 401),
    InvalidWriteKey => ("invalid_write_key", "auth", 401),
    MissingCredentials => ("missing_credentials", "auth", 401),
    InvalidAdminToken => ("invalid_admin_token", "auth", 401),
    InvalidSubjectToken => ("invalid_subject_token", "auth", 401),
    SubjectTokenRequired => ("subject_token_required", "auth", 403),
    Forbidden => ("forbidden", "auth", 403),
    InvalidAdvertiserKey => ("invalid_advertiser_key", "auth", 401),
    InvalidQuery => ("invalid_query", "invalid_request", 400),
    QueryNotAllowed => ("query_not_allowed", "auth", 403),
    BudgetExceeded => ("budget_exceeded", "privacy_budget", 429),
    // Lifetime caps never renew: retrying later does not help, hence not 429.
    LifetimeBudgetExceeded => ("lifetime_budget_exceeded", "privacy_budget", 403),
    TotalBudgetExceeded => ("total_budget_exceeded", "privacy_budget", 429),
    RateLimited => ("rate_limited", "rate_limit", 429),
    Overloaded => ("overloaded", "rate_limit", 503),
    RequestTimeout => ("request_timeout", "invalid_request", 408),
    InsightsUnavailable => ("insights_unavailable", "internal", 503),
    AlreadyExists => ("already_exists", "invalid_request", 409),
    Conflict => ("conflict", "invalid_request", 409),
    UnfairPrompt => ("unfair_prompt", "invalid_request", 422),
    SubjectNotFound => ("subject_not_found", "invalid_request", 404),
    UnknownField => ("unknown_field", "invalid_request", 404),
    InvalidFieldValue => ("invalid_field_value", "invalid_request", 400),
    // Segments and personalization (issue 14).
    InvalidSegment => ("invalid_segment", "invalid_request", 400),
    SegmentNotAllowed => ("segment_not_allowed", "invalid_request", 422),
    UnknownSegment => ("unknown_segment", "invalid_request", 404),
    UnknownPlacement => ("unknown_placement", "invalid_request", 404),
    // The loyalty program (issue 14).
    LoyaltyUnavailable => ("loyalty_unavailable", "invalid_request", 404),
    LoyaltyNotGranted => ("loyalty_not_granted", "loyalty", 403),
    LoyaltyCapped => ("loyalty_capped", "loyalty", 409),
    LoyaltyInsufficientPoints => ("loyalty_insufficient_points", "loyalty", 409),
    LoyaltyOutOfStock => ("loyalty_out_of_stock", "loyalty", 409),
    LoyaltyNoSuchRedemption => ("loyalty_no_such_redemption", "loyalty", 404),
    LoyaltyAlreadyReversed => ("loyalty_already_reversed", "loyalty", 409),
    UnknownReward => ("unknown_reward", "invalid_request", 404),
    IdempotencyKeyConflict => ("idempotency_key_conflict", "invalid_request", 409),
    // Email on consent (issue 16).
    EmailDisabled => ("email_disabled", "invalid_request", 404),
    InvalidEmail => ("invalid_email", "invalid_request", 400),
    UnknownList => ("unknown_list", "invalid_request", 404),
    InvalidTemplate => ("invalid_template", "invalid_request", 400),
    UnrecognizedReport => ("unrecognized_report", "invalid_request", 422),
    UnsupportedMediaType => ("unsupported_media_type", "invalid_request", 415),
    NotFound => ("not_found", "invalid_request", 404),
    MethodNotAllowed => ("method_not_allowed", "invalid_request", 405),
    Internal => ("internal", "internal", 500),
    Unavailable => ("unavailable", "internal", 503),
}

impl Code {
    pub fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The error's type (`invalid_request`, `auth`, …).
    pub fn kind(self) -> &'static str {
        self.row().1
    }

    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.row().2).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// One failed item of a batch.
#[derive(Debug, Serialize, Clone)]
pub struct ItemError {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{message} ({})", code.as_str())]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub errors: Vec<ItemError>,
    /// The rules a refused prompt variant breaks (`unfair_prompt`).
    pub violations: Vec<Violation>,
    /// Seconds after which trying again can succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// One dark pattern the prompt linter found: its rule, the element, what it saw.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub element: String,
    pub detail: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: Vec::new(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn with_violations(mut self, violations: Vec<Violation>) -> Self {
        self.violations = violations;
        self
    }

    pub fn with_items(mut self, errors: Vec<ItemError>) -> Self {
        self.errors = errors;
        self
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ItemError],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    violations: &'a [Violation],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, kind, _) = self.code.row();
        let body = Body {
            code,
            message: &self.message,
            kind,
            errors: &self.errors,
            violations: &self.violations,
        };
        crate::telemetry::ApiErrorReturned { code }.emit();
        let mut resp = (self.code.status(), axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotGiven { purpose } => ApiError::new(
                Code::ConsentNotGiven,
                format!("consent for {purpose} is not currently given, so it cannot be withdrawn"),
            ),
            StoreError::UnknownSubject => ApiError::new(Code::SubjectNotFound, "no such subject"),
            StoreError::NotPending { list } => ApiError::new(
                Code::Conflict,
                format!("the subscription to {list} is not waiting for a confirmation"),
            ),
            StoreError::NotYours => crate::pipeline::consent::not_yours(),
            StoreError::NotAbandoned => ApiError::new(
                Code::Conflict,
                "the subject holds more than an expired request; nothing was erased",
            ),
            StoreError::UnknownAdvertiser => ApiError::new(Code::NotFound, "no such advertiser"),
            StoreError::AdvertiserExists => {
                ApiError::new(Code::AlreadyExists, "an advertiser with this id exists")
            }
            StoreError::AdvertiserChanged => ApiError::new(
                Code::Conflict,
                "the advertiser kept changing while this change was applied; nothing was written, try again",
            ),
            StoreError::Overspend { limit, .. } => ApiError::new(
                crate::audience::overspend_code(limit),
                format!("the {} does not cover this query; nothing was charged", limit.describe()),
            ),
            StoreError::Closed => ApiError::new(Code::Unavailable, "the server is shutting down"),
            StoreError::Contention(_) => ApiError::new(
                Code::Unavailable,
                "the database kept aborting this change for conflicting ones; nothing was applied, try again",
            ),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(Code::Internal, "internal storage error")
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_statuses_valid() {
        let mut seen = HashSet::new();
        let mut variants = HashSet::new();
        for (c, code, kind, status) in TABLE {
            assert!(seen.insert(*code), "duplicate code {code}");
            assert!(variants.insert(format!("{c:?}")), "duplicate row for {c:?}");
            assert!(StatusCode::from_u16(*status).is_ok());
            assert_eq!(c.status().as_u16(), *status);
            assert!(!kind.is_empty());
            assert_eq!(c.as_str(), *code);
        }
    }
}
