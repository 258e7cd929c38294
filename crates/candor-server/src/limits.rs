//! Bounded edges (issue 11, part 3), the per-request half: how many requests run at
//! once, rate limits per write key and per client address, request bodies that must
//! arrive within a deadline, and the cap on new subjects a browser source creates.
//! The per-connection half (connection cap, header and idle timeouts) is `serve`'s.
//!
//! Rate limits are token buckets: `per_second` tokens refill up to `burst`, a request
//! takes one, and an empty bucket answers `429 rate_limited` with `Retry-After` (the
//! seconds until a token is back). Buckets live in a bounded map: when it is full,
//! buckets that have refilled completely (they hold no information) are dropped, and
//! if none has, the request shares one overflow bucket, so no number of addresses can
//! grow memory without bound. IPv6 addresses are bucketed by their /64, which one
//! subscriber usually holds whole.
//!
//! Time is the application's clock, so tests can move it instead of sleeping.

use crate::auth;
use crate::config::{LimitSettings, Rate, SourceKind};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use candor_core::SourceId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Buckets tracked per map at most (addresses, keys): about 64 bytes each.
const MAX_BUCKETS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Token buckets keyed by `K`, all with one rate.
pub struct Buckets<K> {
    rate: Rate,
    map: Mutex<Tracked<K>>,
    overflow: Mutex<Bucket>,
}

struct Tracked<K> {
    buckets: HashMap<K, Bucket>,
    /// When full buckets were last dropped: at most once a second, so a flood of new
    /// addresses cannot make every request scan the map.
    swept_ms: i64,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            map: Mutex::new(Tracked {
                buckets: HashMap::new(),
                swept_ms: i64::MIN,
            }),
            overflow: Mutex::new(Bucket {
                tokens: rate.burst,
                at_ms: 0,
            }),
        }
    }

    fn refill(&self, b: &mut Bucket, now_ms: i64) {
        let elapsed = (now_ms - b.at_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        b.at_ms = now_ms;
    }

    /// Takes `n` tokens for `key`, or says in how many seconds they will be there.
    pub fn take(&self, key: &K, n: f64, now_ms: i64) -> Result<(), u64> {
        let mut tracked = self.map.lock();
        let tracked = &mut *tracked;
        let map = &mut tracked.buckets;
        if !map.contains_key(key)
            && map.len() >= MAX_BUCKETS
            && now_ms.saturating_sub(tracked.swept_ms) >= 1000
        {
            // Full buckets say nothing a new bucket would not: drop them.
            tracked.swept_ms = now_ms;
            let per_ms = self.rate.per_second / 1000.0;
            let burst = self.rate.burst;
            map.retain(|_, b| b.tokens + (now_ms - b.at_ms).max(0) as f64 * per_ms < burst);
        }
        let fresh = Bucket {
            tokens: self.rate.burst,
            at_ms: now_ms,
        };
        let mut overflow;
        let bucket = if map.len() < MAX_BUCKETS || map.contains_key(key) {
            map.entry(key.clone()).or_insert(fresh)
        } else {
            overflow = self.overflow.lock();
            &mut *overflow
        };
        self.refill(bucket, now_ms);
        if bucket.tokens >= n {
            bucket.tokens -= n;
            Ok(())
        } else {
            let wait = (n - bucket.tokens) / self.rate.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// A client address as the rate limit keys it: IPv4 whole, IPv6 by its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

/// Everything the per-request limits keep.
pub struct Limits {
    pub settings: LimitSettings,
    in_flight: Semaphore,
    browser_keys: Option<Buckets<SourceId>>,
    server_keys: Option<Buckets<SourceId>>,
    addresses: Option<Buckets<IpAddr>>,
    new_subjects: Buckets<SourceId>,
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            in_flight: Semaphore::new(settings.max_in_flight),
            browser_keys: settings.browser_key.map(Buckets::new),
            server_keys: settings.server_key.map(Buckets::new),
            addresses: settings.per_address.map(Buckets::new),
            new_subjects: Buckets::new(Rate {
                per_second: f64::from(settings.new_subjects_per_minute) / 60.0,
                burst: f64::from(settings.new_subjects_per_minute),
            }),
            settings,
        }
    }

    /// Takes one new subject from the browser source's allowance.
    pub fn new_subject(&self, source: &SourceId, now_ms: i64) -> Result<(), ApiError> {
        self.new_subjects.take(source, 1.0, now_ms).map_err(|wait| {
            ApiError::new(
                Code::RateLimited,
                "this source is creating new subjects faster than its limit allows",
            )
            .retry_after(wait)
        })
    }

    /// The client's address: the configured proxy header's last entry (the hop the
    /// proxy saw), else the connection's peer.
    pub fn client_address(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        if let Some(h) = &self.settings.client_ip_header {
            let from_header = headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            if from_header.is_some() {
                return from_header;
            }
        }
        peer.map(|p| p.ip())
    }
}

fn limited(wait: u64) -> Response {
    ApiError::new(
        Code::RateLimited,
        "too many requests: slow down and retry after the number of seconds in Retry-After",
    )
    .retry_after(wait)
    .into_response()
}

/// The per-request limits, in front of every route: the in-flight cap, then the rate
/// limits of the credential the headers carry (checked from the headers alone, before
/// any body is read), then a deadline on the body.
pub async fn layer(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let limits = &st.limits;
    let Ok(_permit) = limits.in_flight.try_acquire() else {
        return ApiError::new(
            Code::Overloaded,
            "the server is handling as many requests as it allows; retry shortly",
        )
        .retry_after(1)
        .into_response();
    };
    let now = st.now_ms();
    let headers = req.headers();
    // Which credential the headers present: only a write key is rate-limited by key.
    let source = auth::basic_username(headers)
        .ok()
        .flatten()
        .and_then(|k| st.sources.authenticate(&k).cloned());
    let bearer = auth::bearer(headers).is_some();
    let exempt = req.uri().path() == "/healthz";
    if let Some(src) = &source {
        let buckets = match src.kind {
            SourceKind::Browser => limits.browser_keys.as_ref(),
            SourceKind::Server => limits.server_keys.as_ref(),
        };
        if let Some(Err(wait)) = buckets.map(|b| b.take(&src.id, 1.0, now)) {
            return limited(wait);
        }
    }
    let keyed_by_address = match &source {
        Some(s) => s.kind == SourceKind::Browser,
        None => !bearer && !exempt,
    };
    if keyed_by_address {
        let peer = crate::serve::peer(&req);
        if let (Some(buckets), Some(ip)) = (&limits.addresses, limits.client_address(headers, peer))
        {
            if let Err(wait) = buckets.take(&address_key(ip), 1.0, now) {
                return limited(wait);
            }
        }
    }
    let deadline = limits.settings.body_read_timeout;
    let req = req.map(|b| Body::new(Deadline::new(b, deadline)));
    next.run(req).await
}

/// The body did not arrive within the deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the time allowed")]
pub struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] once its deadline passes, so a
/// client trickling a body cannot hold a worker and a connection open for ever.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Body, after: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(after)),
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_say_when() {
        let b = Buckets::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert_eq!(b.take(&"k", 1.0, 0), Ok(()));
        }
        assert_eq!(b.take(&"k", 1.0, 0), Err(1));
        // Half a second later one token is back.
        assert_eq!(b.take(&"k", 1.0, 500), Ok(()));
        assert_eq!(b.take(&"k", 1.0, 500), Err(1));
        // Another key has its own bucket.
        assert_eq!(b.take(&"other", 1.0, 500), Ok(()));
        // Never more than the burst.
        assert!(b.take(&"k", 4.0, 1_000_000).is_err());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
    }
}
