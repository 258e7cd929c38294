//! The OpenAPI 3.1 document, generated from the code so that it cannot drift from it.
//!
//! Three sources, each said once:
//! - each handler's `#[utoipa::path]` (beside the handler: path, method, parameters,
//!   request and response bodies, whose schemas `utoipa` derives from the Rust DTOs);
//! - the route table (`routes::table::ROUTES`: who may call a route and the error codes
//!   its own checks answer with), from which the security requirements and the error
//!   responses are added here;
//! - the error table (`error::TABLE`): the `Error` schema, and each error response's
//!   status, codes and examples.
//!
//! `tests/api/meta.rs` fails when a route the router serves is not in the document (or
//! the other way round); `scripts/check-responses` checks every response the API suite
//! received against it, error codes included.

use crate::error::{Code, TABLE};
use crate::routes::table::{self, Role};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Candor",
        description = "Consent-first customer data: a consent ledger with signed receipts, \
consent-gated ingestion compatible with Segment's HTTP API, a person's own data and choices, \
email on consent, a loyalty program, and differentially private insights for advertisers.\n\n\
Errors are `{\"code\", \"message\", \"type\"}`; clients key on `code`, which never changes \
meaning. Each operation lists the codes it can answer with (`x-candor-codes` on each error \
response) and who may call it (`x-candor-role`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "ingest", description = "Segment-compatible ingestion: events are stored only for the purposes their subject granted."),
        (name = "consent", description = "Record and read consent; every change is a ledger record with a signed receipt."),
        (name = "my data", description = "A person's own data: export, erasure, volunteered fields."),
        (name = "personalization", description = "Segments and personal offers, only with the purposes that allow them."),
        (name = "loyalty", description = "Points for what people chose to share, and rewards."),
        (name = "email", description = "Email on consent: double opt-in lists, campaigns, one-click unsubscribe."),
        (name = "insights", description = "Differentially private aggregates for advertisers, within a privacy budget."),
        (name = "prompt", description = "The consent prompt (candor.js), its wording and anonymous counts."),
        (name = "admin", description = "The operator's API (admin token)."),
        (name = "pages", description = "HTML pages: the preference center, the email pages, the dashboard."),
        (name = "meta", description = "The service itself: health, metrics, keys, this document."),
    ),
)]
struct Base;

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_string(&document()).unwrap_or_default())
}

/// The whole document, with the route table's security and errors applied.
pub fn document() -> Value {
    assembled().0
}

/// Schemas two modules define differently under one name: merging keeps only one of
/// them, so the document would describe one type with the other's schema. A test keeps
/// this empty.
pub fn schema_name_clashes() -> Vec<String> {
    assembled().1
}

fn assembled() -> (Value, Vec<String>) {
    use crate::routes::*;
    let mut doc = Base::openapi();
    let mut clashes = Vec::new();
    for part in [
        admin::Api::openapi(),
        advertisers::Api::openapi(),
        audience_pages::Api::openapi(),
        consent::Api::openapi(),
        dashboard::Api::openapi(),
        demo::Api::openapi(),
        email::Api::openapi(),
        email_dashboard::Api::openapi(),
        email_pages::Api::openapi(),
        fields::Api::openapi(),
        ingest::Api::openapi(),
        loyalty::Api::openapi(),
        me::Api::openapi(),
        meta::Api::openapi(),
        mypages::Api::openapi(),
        personalize::Api::openapi(),
        prompt::Api::openapi(),
        segments::Api::openapi(),
    ] {
        if let (Some(have), Some(new)) = (&doc.components, &part.components) {
            for (name, schema) in &new.schemas {
                let differs = have.schemas.get(name).is_some_and(|h| {
                    serde_json::to_value(h).ok() != serde_json::to_value(schema).ok()
                });
                if differs {
                    clashes.push(name.clone());
                }
            }
        }
        doc.merge(part);
    }
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    apply_table(&mut doc);
    (doc, clashes)
}

/// Error codes every route can answer with, whatever it does: the edge's limits and
/// the server's own trouble.
const EVERY_ROUTE: &[Code] = &[
    Code::RateLimited,
    Code::Overloaded,
    Code::RequestTimeout,
    Code::Internal,
    Code::Unavailable,
];

/// The credentials a role accepts, as OpenAPI security requirements (any one of them),
/// and the codes its authentication answers with.
fn role_doc(role: Role) -> (Vec<&'static str>, &'static [Code]) {
    use Code::*;
    // A valid advertiser key is refused everywhere but `/v1/insights/*`.
    match role {
        Role::Anyone | Role::PersonEntry | Role::LoginForm => (vec![], &[Forbidden]),
        Role::WriteKey => (
            vec!["writeKey"],
            &[MissingWriteKey, InvalidWriteKey, Forbidden],
        ),
        // A bearer token is read as a subject token first, and refused as one.
        Role::ServerKey => (
            vec!["writeKey"],
            &[
                MissingCredentials,
                InvalidWriteKey,
                InvalidSubjectToken,
                Forbidden,
            ],
        ),
        Role::ConsentActor | Role::ServerOrSubject => (
            vec!["writeKey", "subjectToken"],
            &[
                MissingCredentials,
                InvalidWriteKey,
                InvalidSubjectToken,
                SubjectTokenRequired,
                Forbidden,
            ],
        ),
        Role::Admin => (
            vec!["adminToken"],
            &[MissingCredentials, InvalidAdminToken, Forbidden],
        ),
        Role::AdminSession => (vec!["adminSession"], &[Forbidden]),
        Role::PersonSession => (vec!["personSession"], &[Forbidden]),
        Role::Advertiser => (
            vec!["advertiserKey"],
            &[
                InvalidAdvertiserKey,
                MissingCredentials,
                InvalidWriteKey,
                Forbidden,
            ],
        ),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Anyone => "anyone",
        Role::WriteKey => "write_key",
        Role::ConsentActor => "consent_actor",
        Role::ServerKey => "server_key",
        Role::Admin => "admin",
        Role::AdminSession => "admin_session",
        Role::Advertiser => "advertiser",
        Role::ServerOrSubject => "server_or_subject",
        Role::PersonSession => "person_session",
        Role::PersonEntry => "person_entry",
        Role::LoginForm => "login_form",
    }
}

/// Security schemes, the `Error` schema and, on every operation of the table, its
/// role, security and error responses.
fn apply_table(doc: &mut Value) {
    let components = doc["components"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"] = security_schemes();
    components["schemas"]["Error"] = error_schema();
    doc["components"] = components;

    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Ok(m) = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let Some(route) = table::route(&m, path) else {
                continue;
            };
            document_route(op, route);
        }
    }
}

/// `GET /v1/admin/segments/{name}/members` → `get_admin_segments_name_members`,
/// `GET /admin/` → `get_admin_index` (and `_page` after it for an HTML page):
/// predictable, unique (method and path are), and what generated clients name their
/// functions after. `/v1` is left out; pages keep their whole path.
fn operation_id(method: &str, path: &str) -> String {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let mut id = method.to_lowercase();
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.ends_with('_') {
            id.push('_');
        }
    }
    let mut id = id.trim_end_matches('_').to_owned();
    // `/admin/` is not `/admin` (a page and its redirect).
    if path.len() > 1 && path.ends_with('/') {
        id.push_str("_index");
    }
    id
}

/// Codes reading any request body can answer with (`body::read_text`), and those of
/// parsing a JSON one (`body::parse_json`): added wherever the operation takes one.
const ANY_BODY: &[Code] = &[
    Code::InvalidUtf8,
    Code::InvalidGzip,
    Code::UnsupportedEncoding,
];
const JSON_BODY: &[Code] = &[Code::InvalidJson, Code::InvalidRequest];

fn document_route(op: &mut Value, route: &table::Route) {
    let (schemes, auth_codes) = role_doc(route.role);
    let body = &op["requestBody"]["content"];
    let any_body = body.is_object();
    let json_body = body.get("application/json").is_some();
    let mut id = operation_id(route.method, route.path);
    // A page may share its path's words with an API route (`/admin/segments`,
    // `/v1/admin/segments`): the page's id says it is one.
    if op["tags"][0] == "pages" {
        id.push_str("_page");
    }
    op["operationId"] = json!(id);
    op["x-candor-role"] = json!(role_name(route.role));
    op["security"] = if schemes.is_empty() {
        json!([])
    } else {
        Value::Array(schemes.iter().map(|s| json!({ *s: [] })).collect())
    };
    // Codes in the table's order, each once, grouped by status.
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for (code, _, _, status) in TABLE {
        let listed = route.errors.contains(code)
            || auth_codes.contains(code)
            || EVERY_ROUTE.contains(code)
            || (any_body && ANY_BODY.contains(code))
            || (json_body && JSON_BODY.contains(code));
        if listed {
            by_status.entry(*status).or_default().push(*code);
        }
    }
    let responses = &mut op["responses"];
    for (status, codes) in by_status {
        let key = status.to_string();
        let error = error_response(&codes);
        match responses.get_mut(&key) {
            // The handler documented this status itself (a page answering with HTML):
            // keep what it said, and add the JSON error the edge answers with.
            Some(own) => {
                own["x-candor-codes"] = error["x-candor-codes"].clone();
                if own["content"].get("application/json").is_none() {
                    own["content"]["application/json"] =
                        error["content"]["application/json"].clone();
                }
            }
            None => responses[&key] = error,
        }
    }
}

fn codes_json(codes: &[Code]) -> Value {
    Value::Array(codes.iter().map(|c| json!(c.as_str())).collect())
}

fn error_response(codes: &[Code]) -> Value {
    let names: Vec<String> = codes.iter().map(|c| format!("`{}`", c.as_str())).collect();
    let mut examples = Map::new();
    for c in codes {
        examples.insert(
            c.as_str().to_owned(),
            json!({"value": {"code": c.as_str(), "message": example_message(*c), "type": c.kind()}}),
        );
    }
    json!({
        "description": names.join(", "),
        "x-candor-codes": codes_json(codes),
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"},
            "examples": examples,
        }},
    })
}

/// A message of the kind the code comes with (examples only: clients key on `code`).
fn example_message(c: Code) -> &'static str {
    use Code::*;
    match c {
        InvalidJson => "expected `,` or `}` at line 1 column 17",
        MissingWriteKey | MissingCredentials => "send a write key (Basic auth)",
        InvalidWriteKey => "unknown write key",
        InvalidAdminToken => "invalid admin token",
        InvalidSubjectToken => "invalid or expired subject token",
        InvalidAdvertiserKey => "invalid advertiser key",
        RateLimited => "too many requests: try again later",
        Overloaded => "busy: try again shortly",
        UnknownPurpose => "unknown purpose \"marketting\"",
        NotFound => "no such route",
        _ => "see `code`",
    }
}

fn error_schema() -> Value {
    let codes: Vec<&str> = TABLE.iter().map(|r| r.1).collect();
    let mut kinds: Vec<&str> = TABLE.iter().map(|r| r.2).collect();
    kinds.sort_unstable();
    kinds.dedup();
    json!({
        "type": "object",
        "description": "Every error the API answers with. `code` is stable: clients key on it.",
        "required": ["code", "message", "type"],
        "properties": {
            "code": {"type": "string", "enum": codes},
            "message": {"type": "string", "description": "For people; may change."},
            "type": {"type": "string", "enum": kinds},
            "errors": {
                "type": "array",
                "description": "Per item, where some items of a batch failed.",
                "items": {
                    "type": "object",
                    "required": ["index", "code", "message"],
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string"},
                    },
                },
            },
            "violations": {
                "type": "array",
                "description": "The rules a refused prompt variant breaks (`unfair_prompt`).",
                "items": {
                    "type": "object",
                    "required": ["rule", "element", "detail"],
                    "properties": {
                        "rule": {"type": "string"},
                        "element": {"type": "string"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    })
}

fn security_schemes() -> Value {
    json!({
        "writeKey": {
            "type": "http", "scheme": "basic",
            "description": "A source's write key as the Basic-auth user name, password empty \
    (Segment's convention; `writeKey` in a JSON body also works on the ingestion routes). \
    Browser keys act only for an anonymous id linked to nothing else; server keys for anyone.",
        },
        "subjectToken": {
            "type": "http", "scheme": "bearer", "bearerFormat": "candor subject token",
            "description": "A short-lived token the operator's backend mints for one signed-in \
    user (`POST /v1/admin/subject-tokens`): it acts for that user only.",
        },
        "adminToken": {
            "type": "http", "scheme": "bearer",
            "description": "The operator's admin token.",
        },
        "advertiserKey": {
            "type": "http", "scheme": "bearer", "bearerFormat": "cand_adv_…",
            "description": "An advertiser's key: it reaches `/v1/insights/*` and nothing else.",
        },
        "adminSession": {
            "type": "apiKey", "in": "cookie", "name": crate::pages::SESSION_COOKIE,
            "description": "The dashboard's session, bought with the admin token at \
    `POST /admin/login`; every form POST carries its CSRF token.",
        },
        "personSession": {
            "type": "apiKey", "in": "cookie", "name": crate::person::COOKIE,
            "description": "A person's session on their own pages, from a single-use \
    sign-in link; every form POST carries its CSRF token.",
        },
    })
}
