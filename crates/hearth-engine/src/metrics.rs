//! Counters, gauges and histograms of the engine, rendered in Prometheus' text format.
//! Written by the engine thread, read by the HTTP layer; plain atomics and small locks.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// A cumulative histogram with fixed upper bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Default)]
struct HistogramState {
    /// `[bounds.len()]`: observations `<=` each bound (not cumulative until rendered).
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            state: Mutex::new(HistogramState {
                buckets: Vec::new(),
                sum: 0.0,
                count: 0,
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.buckets.is_empty() {
            s.buckets = vec![0; self.bounds.len()];
        }
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            s.buckets[i] += 1;
        }
        s.sum += v;
        s.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += s.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            s.count, s.sum, s.count
        );
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const ITL_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0,
];

/// What `/metrics` reports.
pub struct Metrics {
    pub requests_running: AtomicU64,
    pub requests_waiting: AtomicU64,
    pub requests_total: AtomicU64,
    pub requests_finished_stop: AtomicU64,
    pub requests_finished_length: AtomicU64,
    pub requests_cancelled: AtomicU64,
    pub preemptions_total: AtomicU64,
    pub prompt_tokens_total: AtomicU64,
    pub generation_tokens_total: AtomicU64,
    pub kv_blocks_used: AtomicU64,
    pub kv_blocks_total: AtomicU64,
    /// Positions per KV block (the prefix cache's granularity).
    pub kv_block_size: AtomicU64,
    /// Free blocks that still hold a cached prefix.
    pub kv_blocks_cached: AtomicU64,
    /// Prompt tokens looked up in the prefix cache, and those found.
    pub prefix_cache_queries_total: AtomicU64,
    pub prefix_cache_hits_total: AtomicU64,
    /// Speculative decoding: tokens drafted, and drafts the model confirmed.
    pub spec_drafted_total: AtomicU64,
    pub spec_accepted_total: AtomicU64,
    pub steps_total: AtomicU64,
    pub batch_tokens_total: AtomicU64,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub e2e_request_latency: Histogram,
    pub queue_time: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Metrics {
            requests_running: z(),
            requests_waiting: z(),
            requests_total: z(),
            requests_finished_stop: z(),
            requests_finished_length: z(),
            requests_cancelled: z(),
            preemptions_total: z(),
            prompt_tokens_total: z(),
            generation_tokens_total: z(),
            kv_blocks_used: z(),
            kv_blocks_total: z(),
            kv_block_size: z(),
            kv_blocks_cached: z(),
            prefix_cache_queries_total: z(),
            prefix_cache_hits_total: z(),
            spec_drafted_total: z(),
            spec_accepted_total: z(),
            steps_total: z(),
            batch_tokens_total: z(),
            time_to_first_token: Histogram::new(LATENCY_BOUNDS),
            inter_token_latency: Histogram::new(ITL_BOUNDS),
            e2e_request_latency: Histogram::new(LATENCY_BOUNDS),
            queue_time: Histogram::new(LATENCY_BOUNDS),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let g = |a: &AtomicU64| a.load(Relaxed) as f64;
        one(
            "hearth_requests_running",
            "gauge",
            "Requests whose sequences are in the running batch.",
            g(&self.requests_running),
        );
        one(
            "hearth_requests_waiting",
            "gauge",
            "Requests queued for a place in the batch.",
            g(&self.requests_waiting),
        );
        one(
            "hearth_requests_total",
            "counter",
            "Requests accepted by the engine.",
            g(&self.requests_total),
        );
        one(
            "hearth_requests_cancelled_total",
            "counter",
            "Requests whose client went away before the end.",
            g(&self.requests_cancelled),
        );
        one(
            "hearth_preemptions_total",
            "counter",
            "Sequences preempted (blocks freed, recomputed later) for lack of KV blocks.",
            g(&self.preemptions_total),
        );
        one(
            "hearth_prompt_tokens_total",
            "counter",
            "Prompt tokens run through the model.",
            g(&self.prompt_tokens_total),
        );
        one(
            "hearth_generation_tokens_total",
            "counter",
            "Tokens generated.",
            g(&self.generation_tokens_total),
        );
        let total = g(&self.kv_blocks_total);
        let usage = if total > 0.0 {
            g(&self.kv_blocks_used) / total
        } else {
            0.0
        };
        one(
            "hearth_kv_cache_blocks_used",
            "gauge",
            "KV-cache blocks held by sequences.",
            g(&self.kv_blocks_used),
        );
        one(
            "hearth_kv_cache_blocks_total",
            "gauge",
            "KV-cache blocks in the pool.",
            total,
        );
        one(
            "hearth_kv_cache_usage_ratio",
            "gauge",
            "Fraction of KV-cache blocks in use.",
            usage,
        );
        one(
            "hearth_kv_cache_blocks_cached",
            "gauge",
            "Free KV-cache blocks that still hold a reusable prefix.",
            g(&self.kv_blocks_cached),
        );
        one(
            "hearth_prefix_cache_queries_total",
            "counter",
            "Prompt tokens looked up in the prefix cache.",
            g(&self.prefix_cache_queries_total),
        );
        one(
            "hearth_prefix_cache_hits_total",
            "counter",
            "Prompt tokens whose keys and values came from the prefix cache.",
            g(&self.prefix_cache_hits_total),
        );
        one(
            "hearth_spec_drafted_tokens_total",
            "counter",
            "Speculative decoding: tokens drafted.",
            g(&self.spec_drafted_total),
        );
        one(
            "hearth_spec_accepted_tokens_total",
            "counter",
            "Speculative decoding: drafted tokens the model confirmed.",
            g(&self.spec_accepted_total),
        );
        let drafted = g(&self.spec_drafted_total);
        one(
            "hearth_spec_acceptance_ratio",
            "gauge",
            "Speculative decoding: confirmed over drafted tokens.",
            if drafted > 0.0 {
                g(&self.spec_accepted_total) / drafted
            } else {
                0.0
            },
        );
        one(
            "hearth_engine_steps_total",
            "counter",
            "Forward passes run by the engine.",
            g(&self.steps_total),
        );
        one(
            "hearth_engine_batch_tokens_total",
            "counter",
            "Tokens run in all forward passes.",
            g(&self.batch_tokens_total),
        );
        // The model-server protocol of Kubernetes inference gateways (the Gateway API
        // Inference Extension's endpoint picker) reads vLLM's names.
        one(
            "vllm:num_requests_running",
            "gauge",
            "Alias of hearth_requests_running, for inference gateways.",
            g(&self.requests_running),
        );
        one(
            "vllm:num_requests_waiting",
            "gauge",
            "Alias of hearth_requests_waiting, for inference gateways.",
            g(&self.requests_waiting),
        );
        one(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "Alias of hearth_kv_cache_usage_ratio (a fraction, 0 to 1), for inference gateways.",
            usage,
        );
        let _ = writeln!(
            out,
            "# HELP hearth_requests_finished_total Requests finished, by reason.\n# TYPE hearth_requests_finished_total counter\n\
             hearth_requests_finished_total{{reason=\"stop\"}} {}\nhearth_requests_finished_total{{reason=\"length\"}} {}",
            g(&self.requests_finished_stop),
            g(&self.requests_finished_length)
        );
        let _ = writeln!(
            out,
            "# HELP vllm:cache_config_info The KV cache's configuration, for prefix-aware routing.\n\
             # TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{block_size=\"{}\"}} 1",
            g(&self.kv_block_size)
        );
        self.time_to_first_token.render(
            &mut out,
            "hearth_time_to_first_token_seconds",
            "From the request's arrival to its first generated token.",
        );
        self.inter_token_latency.render(
            &mut out,
            "hearth_inter_token_latency_seconds",
            "Between consecutive generated tokens of one request.",
        );
        self.e2e_request_latency.render(
            &mut out,
            "hearth_e2e_request_latency_seconds",
            "From the request's arrival to its last token.",
        );
        self.queue_time.render(
            &mut out,
            "hearth_request_queue_time_seconds",
            "From the request's arrival to its first scheduled step.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "x", "help");
        assert!(s.contains("x_bucket{le=\"0.1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"1\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 4\n"), "{s}");
        assert!(s.contains("x_count 4\n"), "{s}");
    }

    #[test]
    fn render_names_every_required_metric() {
        let m = Metrics::default();
        m.prompt_tokens_total.fetch_add(7, Relaxed);
        let s = m.render();
        for name in [
            "hearth_requests_running 0",
            "hearth_requests_waiting 0",
            "hearth_prompt_tokens_total 7",
            "hearth_generation_tokens_total 0",
            "hearth_kv_cache_usage_ratio 0",
            "hearth_time_to_first_token_seconds_count 0",
            "hearth_inter_token_latency_seconds_count 0",
            "hearth_e2e_request_latency_seconds_count 0",
        ] {
            assert!(s.contains(name), "missing {name}");
        }
    }
}
