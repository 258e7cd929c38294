//! Reading request bodies at the edge: size limits before and after decompression
//! (so a gzip bomb costs us at most the limit), `Content-Encoding: gzip`, and UTF-8.

use crate::error::{ApiError, Code};
use axum::body::Body;
use axum::http::HeaderMap;
use flate2::read::GzDecoder;
use std::io::Read;

/// Reads the whole body as UTF-8 text of at most `limit` bytes (after decompression).
pub async fn read_text(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    too_large: Code,
) -> Result<String, ApiError> {
    let bytes = read_bytes(headers, body, limit, too_large).await?;
    String::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            Code::InvalidUtf8,
            format!(
                "the body is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Reads the whole body, of at most `limit` bytes (after decompression).
pub async fn read_bytes(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    too_large: Code,
) -> Result<Vec<u8>, ApiError> {
    let over = || ApiError::new(too_large, format!("the body is larger than {limit} bytes"));
    // A compressed body can be a little larger than its content when incompressible.
    let raw = axum::body::to_bytes(body, limit + limit / 8 + 1024)
        .await
        .map_err(|e| {
            if timed_out(&e) {
                ApiError::new(
                    Code::RequestTimeout,
                    "the request body did not arrive within the time allowed",
                )
            } else {
                over()
            }
        })?;
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let bytes = match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            if raw.len() > limit {
                return Err(over());
            }
            raw.to_vec()
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            GzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::new(
                        Code::InvalidGzip,
                        format!("the gzip body could not be decompressed: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(over());
            }
            out
        }
        Some(other) => {
            return Err(ApiError::new(
                Code::UnsupportedEncoding,
                format!(
                    "Content-Encoding {:?} is not supported; use gzip or none",
                    other.chars().take(30).collect::<String>()
                ),
            ))
        }
    };
    Ok(bytes)
}

/// Whether reading failed because the body's deadline passed (`limits::Deadline`).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<crate::limits::BodyTimedOut>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Maps a serde_json error on a request body to `invalid_json` (syntax) or
/// `invalid_request` (well-formed JSON of the wrong shape).
pub fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            Code::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        ),
        Category::Data => ApiError::new(
            Code::InvalidRequest,
            format!("the body has the wrong shape: {e}"),
        ),
    }
}

pub fn parse_json<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(json_error)
}
