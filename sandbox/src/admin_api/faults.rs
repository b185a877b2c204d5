//! Faults the stand-in injects on demand, to play the Admin API on a bad day.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Set at start (config) and at run time (`POST /_sandbox/faults`). Rates are
/// probabilities per request, 0.0–1.0, drawn in the order listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// 429 with `retry-after` (seconds, see `retry_after_secs`).
    pub rate_429: f64,
    /// 429 without `retry-after` (a spend cap).
    pub rate_429_no_retry_after: f64,
    /// 500 before the request takes effect.
    pub rate_500: f64,
    /// 500 after the request took effect: the caller cannot know it worked.
    pub rate_500_after_effect: f64,
    /// 529 overloaded.
    pub rate_529: f64,
    /// `retry-after` sent with injected 429s.
    pub retry_after_secs: Option<f64>,
    /// Added to every request, in milliseconds.
    pub latency_ms: u64,
    /// A random extra delay of up to this many milliseconds (latency spikes).
    pub latency_jitter_ms: u64,
    /// Validation of a newly registered key fails for this long (KMS propagation).
    pub propagation_delay_secs: f64,
    /// A fixed request-per-minute limit per organization (429 with retry-after past it).
    pub requests_per_minute: Option<u32>,
    /// How `requests_per_minute` is enforced. Anthropic does not publish the
    /// Admin API's limits; for its API it documents a token bucket ("capacity
    /// continuously replenished up to your maximum limit"), adding that a
    /// per-minute limit "may be enforced over shorter time intervals", e.g.
    /// 60 RPM as 1 request per second (platform.claude.com, "Rate limits").
    /// Both readings are a switch: `rate_limit_burst_secs`.
    pub rate_limiter: RateLimiterKind,
    /// The token bucket's capacity, in seconds of the rate: 60 (default) lets
    /// a full minute's requests through at once; 1 enforces the limit per second.
    pub rate_limit_burst_secs: Option<f64>,
    /// Faults apply only to paths starting with one of these, if set.
    pub only_paths: Option<Vec<String>>,
    /// Answer `GET /v1/organizations/me` with this body instead (a garbage
    /// id, the Console's `org_` form…), to see what the client does with it.
    pub organization_response: Option<serde_json::Value>,
    /// Deterministic faults: the next `times` requests matching each answer
    /// its `status`, in order, before any random draw.
    pub scripted: Vec<Scripted>,
    /// Claude Platform on AWS: the next this-many signed requests arrive
    /// altered in transit (a byte of the body or query changed after the
    /// client signed), so their signature must not verify.
    pub tamper_in_transit: u32,
    /// The seed of the random draws (random when unset; the one used is in
    /// `/_sandbox/state` as `fault_seed`, and tests print it when they fail).
    pub seed: Option<u64>,
}

/// "The next `times` requests of `method` to a path ending in `path_suffix`
/// answer `status`" — before the request takes effect, or after it
/// (`after_effect`: the caller cannot know it worked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripted {
    pub method: String,
    pub path_suffix: String,
    pub status: u16,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub after_effect: bool,
    /// The error message (a default per status otherwise).
    #[serde(default)]
    pub message: Option<String>,
    /// `retry-after` (seconds) with the answer, for a 429.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// The typed `error.details.error_code` to send (any string: an
    /// undocumented one shows what the client does with a code it does not know).
    #[serde(default)]
    pub error_code: Option<String>,
}

fn one() -> u32 {
    1
}

impl Scripted {
    /// One answer of `status` to the next `method` request whose path ends
    /// with `path_suffix`, before or after its effect; the status's default
    /// message, no `retry-after`, no error code.
    pub fn once(method: &str, path_suffix: &str, status: u16, after_effect: bool) -> Self {
        Self {
            method: method.to_owned(),
            path_suffix: path_suffix.to_owned(),
            status,
            times: 1,
            after_effect,
            message: None,
            retry_after_secs: None,
            error_code: None,
        }
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0 && self.method.eq_ignore_ascii_case(method) && path.ends_with(&self.path_suffix)
    }

    /// The documented error type of the status.
    pub fn error_type(&self) -> &'static str {
        match self.status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            _ => "api_error",
        }
    }
}

impl Faults {
    /// Take one use of the first scripted fault matching the request.
    pub fn take_scripted(&mut self, method: &str, path: &str) -> Option<Scripted> {
        let s = self.scripted.iter_mut().find(|s| s.matches(method, path))?;
        s.times -= 1;
        Some(s.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    RateLimited { retry_after: Option<u64> },
    ServerError,
    ServerErrorAfterEffect,
    Overloaded,
}

impl Faults {
    pub fn applies_to(&self, path: &str) -> bool {
        self.only_paths
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| path.starts_with(p.as_str())))
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Option<Injected> {
        let retry_after = self.retry_after_secs.unwrap_or(1.0).ceil().max(0.0) as u64;
        let r: f64 = rng.random();
        let mut acc = 0.0;
        for (rate, fault) in [
            (
                self.rate_429,
                Injected::RateLimited {
                    retry_after: Some(retry_after),
                },
            ),
            (
                self.rate_429_no_retry_after,
                Injected::RateLimited { retry_after: None },
            ),
            (self.rate_500, Injected::ServerError),
            (self.rate_500_after_effect, Injected::ServerErrorAfterEffect),
            (self.rate_529, Injected::Overloaded),
        ] {
            acc += rate.clamp(0.0, 1.0);
            if r < acc {
                return Some(fault);
            }
        }
        None
    }

    pub fn latency(&self, rng: &mut impl Rng) -> Duration {
        let jitter = if self.latency_jitter_ms > 0 {
            rng.random_range(0..=self.latency_jitter_ms)
        } else {
            0
        };
        Duration::from_millis(self.latency_ms + jitter)
    }
}

/// The algorithm behind `requests_per_minute`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimiterKind {
    /// Anthropic's documented algorithm for its API.
    #[default]
    TokenBucket,
    /// At most R requests in any 60 s: what the stand-in played before it
    /// followed the documented algorithm, kept as the harsher reading.
    SlidingWindow,
}

/// One organization's limiter state.
#[derive(Debug)]
pub enum Limiter {
    Bucket(TokenBucket),
    Window(RateWindow),
}

impl Limiter {
    pub fn new(faults: &Faults, now: Instant) -> Self {
        match faults.rate_limiter {
            RateLimiterKind::TokenBucket => Self::Bucket(TokenBucket::full(
                faults.rate_limit_burst_secs.unwrap_or(60.0),
                now,
            )),
            RateLimiterKind::SlidingWindow => Self::Window(RateWindow::default()),
        }
    }

    /// Admit a request now, or say how long until one would be admitted.
    pub fn admit(&mut self, limit: u32, now: Instant) -> Result<(), Duration> {
        match self {
            Self::Bucket(b) => b.admit(limit, now),
            Self::Window(w) => w.admit(limit, now),
        }
    }
}

/// A token bucket refilled at `limit` per minute, holding at most
/// `burst_secs` seconds of it (never less than one request).
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    burst_secs: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(burst_secs: f64, now: Instant) -> Self {
        Self {
            tokens: f64::INFINITY,
            burst_secs: burst_secs.max(0.0),
            last: now,
        }
    }

    pub fn admit(&mut self, limit: u32, now: Instant) -> Result<(), Duration> {
        let per_sec = f64::from(limit.max(1)) / 60.0;
        let capacity = (per_sec * self.burst_secs).max(1.0);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }
}

/// A sliding one-minute window of request times.
#[derive(Debug, Default)]
pub struct RateWindow {
    times: VecDeque<Instant>,
}

impl RateWindow {
    /// Admit a request now, or say how long until one would be admitted.
    pub fn admit(&mut self, limit: u32, now: Instant) -> Result<(), Duration> {
        let minute = Duration::from_secs(60);
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            self.times.pop_front();
        }
        if self.times.len() < limit as usize {
            self.times.push_back(now);
            Ok(())
        } else {
            let oldest = self.times.front().copied().unwrap_or(now);
            Err(minute.saturating_sub(now.duration_since(oldest)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_admits_up_to_the_limit() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(w.admit(3, t0).is_ok());
        }
        let wait = w.admit(3, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(w.admit(3, t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn token_bucket_lets_a_burst_through_then_refills_at_the_rate() {
        let t0 = Instant::now();
        // 60 a minute, a minute of burst: 60 at once, then one a second.
        let mut b = TokenBucket::full(60.0, t0);
        for _ in 0..60 {
            assert!(b.admit(60, t0).is_ok());
        }
        let wait = b.admit(60, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
        assert!(b.admit(60, t0 + Duration::from_millis(1500)).is_ok());
        assert!(b.admit(60, t0 + Duration::from_millis(1600)).is_err());
        // Enforced per second: 120 a minute is 2 at once, at most.
        let mut b = TokenBucket::full(1.0, t0);
        assert!(b.admit(120, t0).is_ok());
        assert!(b.admit(120, t0).is_ok());
        assert!(b.admit(120, t0).is_err());
        // A long pause never banks more than the capacity.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.admit(120, later).is_ok());
        assert!(b.admit(120, later).is_ok());
        assert!(b.admit(120, later).is_err());
    }

    #[test]
    fn the_limiter_follows_the_switch() {
        let t0 = Instant::now();
        let window = Faults {
            rate_limiter: RateLimiterKind::SlidingWindow,
            ..Faults::default()
        };
        assert!(matches!(Limiter::new(&window, t0), Limiter::Window(_)));
        assert!(matches!(Limiter::new(&Faults::default(), t0), Limiter::Bucket(_)));
        let parsed: Faults =
            serde_json::from_value(serde_json::json!({"rate_limiter": "sliding-window"})).unwrap();
        assert_eq!(parsed.rate_limiter, RateLimiterKind::SlidingWindow);
    }

    #[test]
    fn a_seed_repeats_the_draws() {
        use rand::SeedableRng;
        let f = Faults {
            rate_500: 0.3,
            rate_529: 0.3,
            ..Faults::default()
        };
        let draws = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..50).map(|_| f.draw(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn rates_are_drawn() {
        let always = Faults {
            rate_529: 1.0,
            ..Faults::default()
        };
        let mut rng = rand::rng();
        assert_eq!(always.draw(&mut rng), Some(Injected::Overloaded));
        assert_eq!(Faults::default().draw(&mut rng), None);
    }
}
