//! The server's counters, gauges and latency histograms, rendered in the Prometheus text format
//! at `GET /metrics` (names prefixed `cuma_`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram of seconds.
#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, c) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, c) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// Everything `/metrics` reports; shared by the handlers and the scheduler.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(endpoint, status)` -> requests answered.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latencies: Mutex<(Histogram, Histogram)>,
    pub queue_depth: AtomicU64,
    pub running: AtomicU64,
    /// The most sequences ever in the batch at once.
    pub peak_running: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub profile_cache_hits: AtomicU64,
    pub profile_cache_misses: AtomicU64,
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint, status)).or_default() += 1;
        }
    }

    pub fn time_to_first_token(&self, seconds: f64) {
        if let Ok(mut h) = self.latencies.lock() {
            h.0.observe(seconds);
        }
    }

    pub fn inter_token(&self, seconds: f64) {
        if let Ok(mut h) = self.latencies.lock() {
            h.1.observe(seconds);
        }
    }

    /// Requests answered with `status` on `endpoint` so far.
    pub fn requests_with(&self, endpoint: &str, status: u16) -> u64 {
        self.requests.lock().map_or(0, |m| {
            m.iter()
                .filter(|((e, s), _)| *e == endpoint && *s == status)
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP cuma_requests_total Requests answered, by endpoint and HTTP status.\n");
        out.push_str("# TYPE cuma_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((endpoint, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "cuma_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        gauge(
            &mut out,
            "cuma_queue_depth",
            "gauge",
            "Requests waiting to be admitted.",
            &self.queue_depth,
        );
        gauge(
            &mut out,
            "cuma_running_sequences",
            "gauge",
            "Sequences being prefilled or decoded.",
            &self.running,
        );
        gauge(
            &mut out,
            "cuma_running_sequences_peak",
            "gauge",
            "The most sequences in the batch at once since the start.",
            &self.peak_running,
        );
        gauge(
            &mut out,
            "cuma_prompt_tokens_total",
            "counter",
            "Prompt tokens admitted.",
            &self.prompt_tokens,
        );
        gauge(
            &mut out,
            "cuma_generated_tokens_total",
            "counter",
            "Tokens generated.",
            &self.generated_tokens,
        );
        gauge(
            &mut out,
            "cuma_profile_cache_hits_total",
            "counter",
            "Profile vectors served from the cache.",
            &self.profile_cache_hits,
        );
        gauge(
            &mut out,
            "cuma_profile_cache_misses_total",
            "counter",
            "Profile vectors computed by the encoder.",
            &self.profile_cache_misses,
        );
        if let Ok(h) = self.latencies.lock() {
            h.0.render(
                &mut out,
                "cuma_time_to_first_token_seconds",
                "From a request's arrival to its first token.",
            );
            h.1.render(
                &mut out,
                "cuma_inter_token_latency_seconds",
                "Decode-step time between a sequence's tokens.",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("chat", 200);
        m.request("chat", 200);
        m.request("chat", 400);
        m.time_to_first_token(0.003);
        m.time_to_first_token(2.0);
        let text = m.render();
        assert!(
            text.contains("cuma_requests_total{endpoint=\"chat\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cuma_time_to_first_token_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cuma_time_to_first_token_seconds_bucket{le=\"2.5\"} 2"),
            "{text}"
        );
        assert!(text.contains("cuma_time_to_first_token_seconds_count 2"), "{text}");
        assert_eq!(m.requests_with("chat", 400), 1);
    }
}
