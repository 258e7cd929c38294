//! Telemetry as typed events (Vector's `internal_events`): one small struct per thing
//! that happens, whose `emit()` logs and counts it. Metric names live here and nowhere
//! else. Nothing here carries personal data: ids, payloads and keys never appear.

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("candor_http_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program);
            // then our handle renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub struct EventsAccepted<'a> {
    pub source: &'a str,
    pub count: u64,
}

impl EventsAccepted<'_> {
    pub fn emit(self) {
        counter!("candor_events_accepted_total", "source" => self.source.to_owned())
            .increment(self.count);
    }
}

/// Why an event was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No purpose the subject granted covers the event's data category.
    NoConsent,
    /// The event maps to no data category.
    Unmapped,
    /// The client's own consent signal (context.consent or Sec-GPC) excluded every purpose.
    ClientConsent,
    /// Consent was withdrawn between the gate and the commit.
    ConsentChanged,
    /// Same source and messageId already stored.
    Duplicate,
    /// A browser key sent a user id without a subject token for it, or an anonymous id
    /// linked to more than it (issue 11): not stored, whoever it names.
    UnprovenIdentity,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoConsent => "no_consent",
            DropReason::Unmapped => "unmapped_event",
            DropReason::ClientConsent => "client_consent",
            DropReason::ConsentChanged => "consent_changed",
            DropReason::Duplicate => "duplicate",
            DropReason::UnprovenIdentity => "unproven_identity",
        }
    }
}

pub struct EventsDropped {
    pub reason: DropReason,
    pub count: u64,
}

impl EventsDropped {
    pub fn emit(self) {
        if self.count > 0 {
            counter!("candor_events_dropped_total", "reason" => self.reason.as_str())
                .increment(self.count);
        }
    }
}

pub struct ConsentChanged<'a> {
    pub purpose: &'a str,
    pub status: &'static str,
    pub channel: &'static str,
}

impl ConsentChanged<'_> {
    pub fn emit(self) {
        counter!("candor_consent_changes_total",
            "purpose" => self.purpose.to_owned(), "status" => self.status, "channel" => self.channel)
        .increment(1);
    }
}

/// An advertiser's insight query was charged and answered (never with anything about
/// the answer itself: the audit log in the store holds that, for the operator).
pub struct InsightAnswered {
    pub metric: &'static str,
}

impl InsightAnswered {
    pub fn emit(self) {
        counter!("candor_insight_queries_total", "metric" => self.metric).increment(1);
    }
}

/// A connection was closed at accept: `max_connections` were open.
pub struct ConnectionRefused;

impl ConnectionRefused {
    pub fn emit(self) {
        counter!("candor_connections_refused_total").increment(1);
    }
}

/// An `identify` trait named a configured field with a value that does not fit it: that
/// field was left as it was (the rest of the message went on as usual). Only the field's
/// name, which is the operator's, is recorded.
pub struct FieldValueRejected<'a> {
    pub field: &'a str,
}

impl FieldValueRejected<'_> {
    pub fn emit(self) {
        counter!("candor_field_values_rejected_total", "field" => self.field.to_owned())
            .increment(1);
    }
}

pub struct ApiErrorReturned {
    pub code: &'static str,
}

impl ApiErrorReturned {
    pub fn emit(self) {
        counter!("candor_api_errors_total", "code" => self.code).increment(1);
    }
}

pub struct RequestFinished {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
    pub seconds: f64,
}

/// Status labels without an allocation per request for the common ones.
fn status_label(s: u16) -> metrics::SharedString {
    match s {
        200 => "200".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        409 => "409".into(),
        413 => "413".into(),
        500 => "500".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    }
}

impl RequestFinished {
    pub fn emit(self) {
        histogram!("candor_http_request_duration_seconds",
            "route" => self.route, "method" => self.method, "status" => status_label(self.status))
        .record(self.seconds);
    }
}
