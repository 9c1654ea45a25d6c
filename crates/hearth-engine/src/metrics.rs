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

    /// The samples of this histogram, each with `labels` (`model="x",` or empty) before
    /// its bucket bound.
    fn samples(&self, out: &mut String, name: &str, labels: &str) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += s.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cum}");
        }
        let braced = braces(labels);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}le=\"+Inf\"}} {}\n{name}_sum{braced} {}\n{name}_count{braced} {}",
            s.count, s.sum, s.count
        );
    }
}

/// `{a="x"}` from `a="x",` (the label list with its trailing comma), or nothing.
fn braces(labels: &str) -> String {
    match labels.strip_suffix(',') {
        Some(l) => format!("{{{l}}}"),
        None => String::new(),
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

/// A histogram family: its name, help, and which of an engine's histograms it is.
type HistogramFamily = (&'static str, &'static str, fn(&Metrics) -> &Histogram);

/// A gauge or counter family: its name, type, help, and how to read it from one engine.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Metrics) -> f64,
);

fn g(a: &AtomicU64) -> f64 {
    a.load(Relaxed) as f64
}

fn kv_usage(m: &Metrics) -> f64 {
    let total = g(&m.kv_blocks_total);
    if total > 0.0 {
        g(&m.kv_blocks_used) / total
    } else {
        0.0
    }
}

const FAMILIES: &[Family] = &[
    (
        "hearth_requests_running",
        "gauge",
        "Requests whose sequences are in the running batch.",
        |m| g(&m.requests_running),
    ),
    (
        "hearth_requests_waiting",
        "gauge",
        "Requests queued for a place in the batch.",
        |m| g(&m.requests_waiting),
    ),
    (
        "hearth_requests_total",
        "counter",
        "Requests accepted by the engine.",
        |m| g(&m.requests_total),
    ),
    (
        "hearth_requests_cancelled_total",
        "counter",
        "Requests whose client went away before the end.",
        |m| g(&m.requests_cancelled),
    ),
    (
        "hearth_preemptions_total",
        "counter",
        "Sequences preempted (blocks freed, recomputed later) for lack of KV blocks.",
        |m| g(&m.preemptions_total),
    ),
    (
        "hearth_prompt_tokens_total",
        "counter",
        "Prompt tokens run through the model.",
        |m| g(&m.prompt_tokens_total),
    ),
    (
        "hearth_generation_tokens_total",
        "counter",
        "Tokens generated.",
        |m| g(&m.generation_tokens_total),
    ),
    (
        "hearth_kv_cache_blocks_used",
        "gauge",
        "KV-cache blocks held by sequences.",
        |m| g(&m.kv_blocks_used),
    ),
    (
        "hearth_kv_cache_blocks_total",
        "gauge",
        "KV-cache blocks in the pool.",
        |m| g(&m.kv_blocks_total),
    ),
    (
        "hearth_kv_cache_usage_ratio",
        "gauge",
        "Fraction of KV-cache blocks in use.",
        kv_usage,
    ),
    (
        "hearth_kv_cache_blocks_cached",
        "gauge",
        "Free KV-cache blocks that still hold a reusable prefix.",
        |m| g(&m.kv_blocks_cached),
    ),
    (
        "hearth_prefix_cache_queries_total",
        "counter",
        "Prompt tokens looked up in the prefix cache.",
        |m| g(&m.prefix_cache_queries_total),
    ),
    (
        "hearth_prefix_cache_hits_total",
        "counter",
        "Prompt tokens whose keys and values came from the prefix cache.",
        |m| g(&m.prefix_cache_hits_total),
    ),
    (
        "hearth_spec_drafted_tokens_total",
        "counter",
        "Speculative decoding: tokens drafted.",
        |m| g(&m.spec_drafted_total),
    ),
    (
        "hearth_spec_accepted_tokens_total",
        "counter",
        "Speculative decoding: drafted tokens the model confirmed.",
        |m| g(&m.spec_accepted_total),
    ),
    (
        "hearth_spec_acceptance_ratio",
        "gauge",
        "Speculative decoding: confirmed over drafted tokens.",
        |m| {
            let drafted = g(&m.spec_drafted_total);
            if drafted > 0.0 {
                g(&m.spec_accepted_total) / drafted
            } else {
                0.0
            }
        },
    ),
    (
        "hearth_engine_steps_total",
        "counter",
        "Forward passes run by the engine.",
        |m| g(&m.steps_total),
    ),
    (
        "hearth_engine_batch_tokens_total",
        "counter",
        "Tokens run in all forward passes.",
        |m| g(&m.batch_tokens_total),
    ),
    // The model-server protocol of Kubernetes inference gateways (the Gateway API
    // Inference Extension's endpoint picker) reads vLLM's names.
    (
        "vllm:num_requests_running",
        "gauge",
        "Alias of hearth_requests_running, for inference gateways.",
        |m| g(&m.requests_running),
    ),
    (
        "vllm:num_requests_waiting",
        "gauge",
        "Alias of hearth_requests_waiting, for inference gateways.",
        |m| g(&m.requests_waiting),
    ),
    (
        "vllm:kv_cache_usage_perc",
        "gauge",
        "Alias of hearth_kv_cache_usage_ratio (a fraction, 0 to 1), for inference gateways.",
        kv_usage,
    ),
];

impl Metrics {
    /// The Prometheus text exposition of every metric of one engine, unlabelled.
    pub fn render(&self) -> String {
        Metrics::render_models(&[("", self)])
    }

    /// The Prometheus text exposition of several engines' metrics, each sample labelled
    /// `model="NAME"` (no label for an empty name): one HELP and TYPE per family.
    pub fn render_models(engines: &[(&str, &Metrics)]) -> String {
        let mut out = String::new();
        // Label values escape backslash, quote and newline.
        let labels: Vec<String> = engines
            .iter()
            .map(|(name, _)| match name {
                &"" => String::new(),
                n => format!(
                    "model=\"{}\",",
                    n.replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n")
                ),
            })
            .collect();
        for (name, kind, help, read) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((_, m), l) in engines.iter().zip(&labels) {
                let _ = writeln!(out, "{name}{} {}", braces(l), read(m));
            }
        }
        let _ = writeln!(
            out,
            "# HELP hearth_requests_finished_total Requests finished, by reason.\n# TYPE hearth_requests_finished_total counter"
        );
        for ((_, m), l) in engines.iter().zip(&labels) {
            let _ = writeln!(
                out,
                "hearth_requests_finished_total{{{l}reason=\"stop\"}} {}\nhearth_requests_finished_total{{{l}reason=\"length\"}} {}",
                g(&m.requests_finished_stop),
                g(&m.requests_finished_length)
            );
        }
        let _ = writeln!(
            out,
            "# HELP vllm:cache_config_info The KV cache's configuration, for prefix-aware routing.\n# TYPE vllm:cache_config_info gauge"
        );
        for ((_, m), l) in engines.iter().zip(&labels) {
            let _ = writeln!(
                out,
                "vllm:cache_config_info{{{l}block_size=\"{}\"}} 1",
                g(&m.kv_block_size)
            );
        }
        let histograms: [HistogramFamily; 4] = [
            (
                "hearth_time_to_first_token_seconds",
                "From the request's arrival to its first generated token.",
                |m| &m.time_to_first_token,
            ),
            (
                "hearth_inter_token_latency_seconds",
                "Between consecutive generated tokens of one request.",
                |m| &m.inter_token_latency,
            ),
            (
                "hearth_e2e_request_latency_seconds",
                "From the request's arrival to its last token.",
                |m| &m.e2e_request_latency,
            ),
            (
                "hearth_request_queue_time_seconds",
                "From the request's arrival to its first scheduled step.",
                |m| &m.queue_time,
            ),
        ];
        for (name, help, h) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((_, m), l) in engines.iter().zip(&labels) {
                h(m).samples(&mut out, name, l);
            }
        }
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
        h.samples(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"0.1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"1\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 4\n"), "{s}");
        assert!(s.contains("x_count 4\n"), "{s}");
    }

    #[test]
    fn several_engines_render_one_family_with_a_sample_each() {
        let (a, b) = (Metrics::default(), Metrics::default());
        b.requests_total.fetch_add(3, Relaxed);
        b.time_to_first_token.observe(0.2);
        let s = Metrics::render_models(&[("small", &a), ("big\"one", &b)]);
        assert_eq!(s.matches("# TYPE hearth_requests_total counter").count(), 1);
        assert!(
            s.contains("hearth_requests_total{model=\"small\"} 0\n"),
            "{s}"
        );
        assert!(
            s.contains("hearth_requests_total{model=\"big\\\"one\"} 3\n"),
            "{s}"
        );
        assert!(
            s.contains("hearth_requests_finished_total{model=\"small\",reason=\"stop\"} 0"),
            "{s}"
        );
        assert!(
            s.contains(
                "hearth_time_to_first_token_seconds_bucket{model=\"big\\\"one\",le=\"0.25\"} 1"
            ),
            "{s}"
        );
        assert!(
            s.contains("hearth_time_to_first_token_seconds_count{model=\"small\"} 0"),
            "{s}"
        );
        assert_eq!(
            s.matches("# TYPE hearth_time_to_first_token_seconds histogram")
                .count(),
            1
        );
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
