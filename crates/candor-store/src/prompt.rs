//! What the consent prompt keeps (issue 12): its saved variants and anonymous counts.
//!
//! Neither holds anything about a person. Counts are totals per UTC day, variant,
//! purpose and metric (`impression`, `granted`, `refused`, `accept_all`, ...), added to
//! in place; no row says who was counted. Variants are the operator's prompt designs,
//! stored as the server's JSON (opaque here) once the linter has passed them.
//!
//! Both are written outside the ingestion path: small transactions of their own on
//! the pool (PostgreSQL) or on a short-lived connection (SQLite, waiting its turn
//! behind the group-commit writer), because they are rare (the server batches counts)
//! and must not sit in the writer's queue beside consent and events.

/// One total. `purpose` is empty for counts about the prompt as a whole.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PromptCount {
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    pub variant: String,
    pub purpose: String,
    pub metric: String,
    pub count: i64,
}

/// A saved prompt variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVariant {
    pub id: String,
    /// The variant as the server's JSON.
    pub definition: String,
    /// Shown to people (in the experiment) or retired.
    pub active: bool,
    pub updated_ms: i64,
}

/// Merges counts with the same key, so each transaction touches a row once (two
/// updates of one row in one multi-row upsert is an error on PostgreSQL).
pub(crate) fn merged(mut counts: Vec<PromptCount>) -> Vec<PromptCount> {
    counts.sort();
    let mut out: Vec<PromptCount> = Vec::with_capacity(counts.len());
    for c in counts {
        match out.last_mut() {
            Some(l)
                if (l.day, &l.variant, &l.purpose, &l.metric)
                    == (c.day, &c.variant, &c.purpose, &c.metric) =>
            {
                l.count += c.count
            }
            _ => out.push(c),
        }
    }
    out
}
