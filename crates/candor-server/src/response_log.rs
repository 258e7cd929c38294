//! A record of every response, for checking them against the OpenAPI document.
//!
//! The API test suite sets [`crate::config::Settings::response_log`] (never the config
//! file: the record holds response bodies, personal data included), and
//! `scripts/check-responses` then validates each recorded response against the
//! generated document: its status and media type must be documented for its route, a
//! JSON body must match the schema, and an error's code must be one the route lists.
//! That is how the document is kept honest about what the server really answers.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// The file responses are appended to, one JSON object a line.
#[derive(Debug)]
pub struct ResponseLog {
    file: Mutex<File>,
}

impl ResponseLog {
    pub fn create(path: &Path) -> std::io::Result<Arc<Self>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(Self {
            file: Mutex::new(file),
        }))
    }

    fn write(&self, line: &Value) {
        let mut text = line.to_string();
        text.push('\n');
        // A lost line only weakens the check; it must not fail the response.
        let _ = self.file.lock().write_all(text.as_bytes());
    }
}

/// Bodies larger than this are recorded by status and media type only.
const MAX_RECORDED: usize = 8 << 20;

/// Middleware: answers as the router did, and records the answer.
pub async fn layer(State(log): State<Arc<ResponseLog>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let media = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let json_body = match &media {
        Some(m) if m.ends_with("json") && bytes.len() <= MAX_RECORDED => {
            serde_json::from_slice::<Value>(&bytes).ok()
        }
        _ => None,
    };
    log.write(&json!({
        "method": method,
        "route": route,
        "status": parts.status.as_u16(),
        "mediaType": media,
        "length": bytes.len(),
        "body": json_body,
    }));
    Response::from_parts(parts, Body::from(bytes))
}
