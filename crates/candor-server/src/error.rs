//! The one table from API error to stable code, type and HTTP status (meilisearch's
//! idea). Clients key on `code`; it never changes meaning once published. Responses
//! are `{"code", "message", "type"}`, plus per-item `errors` where a batch failed.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_store::StoreError;
use serde::Serialize;

/// Every error the API can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidJson,
    InvalidUtf8,
    InvalidGzip,
    UnsupportedEncoding,
    EventTooLarge,
    BatchTooLarge,
    InvalidMessage,
    InvalidRequest,
    UnknownPurpose,
    InvalidConsentString,
    NoticeVersionMismatch,
    ConsentNotGiven,
    MissingWriteKey,
    InvalidWriteKey,
    MissingCredentials,
    InvalidAdminToken,
    InvalidSubjectToken,
    SubjectTokenRequired,
    Forbidden,
    InvalidAdvertiserKey,
    InvalidQuery,
    QueryNotAllowed,
    BudgetExceeded,
    InsightsUnavailable,
    AlreadyExists,
    Conflict,
    SubjectNotFound,
    NotFound,
    MethodNotAllowed,
    Internal,
    Unavailable,
}

/// (code, type, status) for each error. The single source of truth; the OpenAPI
/// document and the tests read it from here.
pub const TABLE: &[(Code, &str, &str, u16)] = &[
    (Code::InvalidJson, "invalid_json", "invalid_request", 400),
    (Code::InvalidUtf8, "invalid_utf8", "invalid_request", 400),
    (Code::InvalidGzip, "invalid_gzip", "invalid_request", 400),
    (
        Code::UnsupportedEncoding,
        "unsupported_encoding",
        "invalid_request",
        415,
    ),
    (
        Code::EventTooLarge,
        "event_too_large",
        "invalid_request",
        413,
    ),
    (
        Code::BatchTooLarge,
        "batch_too_large",
        "invalid_request",
        413,
    ),
    (
        Code::InvalidMessage,
        "invalid_message",
        "invalid_request",
        400,
    ),
    (
        Code::InvalidRequest,
        "invalid_request",
        "invalid_request",
        400,
    ),
    (
        Code::UnknownPurpose,
        "unknown_purpose",
        "invalid_request",
        400,
    ),
    (
        Code::InvalidConsentString,
        "invalid_consent_string",
        "invalid_request",
        400,
    ),
    (
        Code::NoticeVersionMismatch,
        "notice_version_mismatch",
        "invalid_request",
        409,
    ),
    (
        Code::ConsentNotGiven,
        "consent_not_given",
        "invalid_request",
        409,
    ),
    (Code::MissingWriteKey, "missing_write_key", "auth", 401),
    (Code::InvalidWriteKey, "invalid_write_key", "auth", 401),
    (Code::MissingCredentials, "missing_credentials", "auth", 401),
    (Code::InvalidAdminToken, "invalid_admin_token", "auth", 401),
    (
        Code::InvalidSubjectToken,
        "invalid_subject_token",
        "auth",
        401,
    ),
    (
        Code::SubjectTokenRequired,
        "subject_token_required",
        "auth",
        403,
    ),
    (Code::Forbidden, "forbidden", "auth", 403),
    (
        Code::InvalidAdvertiserKey,
        "invalid_advertiser_key",
        "auth",
        401,
    ),
    (Code::InvalidQuery, "invalid_query", "invalid_request", 400),
    (Code::QueryNotAllowed, "query_not_allowed", "auth", 403),
    (
        Code::BudgetExceeded,
        "budget_exceeded",
        "privacy_budget",
        429,
    ),
    (
        Code::InsightsUnavailable,
        "insights_unavailable",
        "internal",
        503,
    ),
    (
        Code::AlreadyExists,
        "already_exists",
        "invalid_request",
        409,
    ),
    (Code::Conflict, "conflict", "invalid_request", 409),
    (
        Code::SubjectNotFound,
        "subject_not_found",
        "invalid_request",
        404,
    ),
    (Code::NotFound, "not_found", "invalid_request", 404),
    (
        Code::MethodNotAllowed,
        "method_not_allowed",
        "invalid_request",
        405,
    ),
    (Code::Internal, "internal", "internal", 500),
    (Code::Unavailable, "unavailable", "internal", 503),
];

impl Code {
    fn row(self) -> (&'static str, &'static str, u16) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .map(|r| (r.1, r.2, r.3))
            .unwrap_or(("internal", "internal", 500))
    }

    pub fn as_str(self) -> &'static str {
        self.row().0
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
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: Vec::new(),
        }
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, kind, _) = self.code.row();
        let body = Body {
            code,
            message: &self.message,
            kind,
            errors: &self.errors,
        };
        crate::telemetry::ApiErrorReturned { code }.emit();
        (self.code.status(), axum::Json(body)).into_response()
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
            StoreError::UnknownAdvertiser => ApiError::new(Code::NotFound, "no such advertiser"),
            StoreError::AdvertiserExists => {
                ApiError::new(Code::AlreadyExists, "an advertiser with this id exists")
            }
            StoreError::AdvertiserChanged => ApiError::new(
                Code::Conflict,
                "the advertiser kept changing while this change was applied; nothing was written, try again",
            ),
            StoreError::Overspend { .. } => ApiError::new(
                Code::BudgetExceeded,
                "the privacy budget does not cover this query; nothing was charged",
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
        for (c, code, kind, status) in TABLE {
            assert!(seen.insert(*code), "duplicate code {code}");
            assert!(StatusCode::from_u16(*status).is_ok());
            assert!(!kind.is_empty());
            assert_eq!(c.as_str(), *code);
        }
    }
}
