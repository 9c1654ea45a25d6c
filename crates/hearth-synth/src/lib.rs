//! Deterministic random-weight GGUF models of every architecture Hearth runs, for tests
//! and benchmarks: the same [`Spec`] gives the same bytes on every machine.
//!
//! A model is untrained. Its weights are uniform noise from a fixed seed (plain IEEE
//! arithmetic, no transcendental functions, so the bits do not depend on the platform's
//! math library), scaled so that the logits are not flat. It carries a small
//! SentencePiece vocabulary ([`vocab`]): byte fallback, printable characters, every
//! lowercase pair and some words. It is written in f32 and then converted by
//! [`hearth_model::quantize`] with llama-quantize's per-tensor recipe.
//!
//! `tests/data/synth/` holds llama.cpp's outputs on the [`presets`], and the tests
//! regenerate the models and compare (see its README).

use anyhow::{bail, Result};
use hearth_gguf::{GgmlType, GgufFile, GgufWriter};
use hearth_model::quantize::{quantize, FileType, QuantizeOptions};

/// The shape of a model to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `general.architecture`, plus `mixtral` for llama with experts.
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Dense FFN width (each expert's, for a mixture of experts).
    pub n_ff: usize,
    /// Experts per layer, 0 for a dense model.
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// Shared expert width (qwen2moe), 0 for none.
    pub n_ff_shexp: usize,
    /// Sliding window of the local layers (gemma3).
    pub n_swa: usize,
    /// The file's weight type after conversion.
    pub ftype: FileType,
    pub seed: u64,
}

/// The test models: one per architecture, heads of 32 or 64.
pub fn presets() -> Vec<Spec> {
    let base = |arch: &str, n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff| Spec {
        arch: arch.into(),
        n_layer,
        n_embd,
        n_head,
        n_head_kv,
        head_dim,
        n_ff,
        n_expert: 0,
        n_expert_used: 0,
        n_ff_shexp: 0,
        n_swa: 0,
        ftype: FileType::Q8_0,
        seed: 0x5eed,
    };
    let moe = |mut s: Spec, n_expert, n_expert_used, n_ff_shexp| {
        s.n_expert = n_expert;
        s.n_expert_used = n_expert_used;
        s.n_ff_shexp = n_ff_shexp;
        s
    };
    let mut gemma3 = base("gemma3", 6, 64, 2, 1, 64, 128);
    gemma3.n_swa = 8;
    vec![
        base("llama", 2, 64, 4, 2, 32, 128),
        base("qwen2", 2, 64, 2, 1, 32, 128),
        base("qwen3", 2, 64, 4, 2, 64, 128),
        gemma3,
        base("phi3", 2, 96, 3, 3, 32, 128),
        moe(base("qwen3moe", 2, 64, 4, 1, 64, 64), 8, 2, 0),
        moe(base("mixtral", 2, 64, 2, 1, 32, 64), 8, 2, 0),
        moe(base("qwen2moe", 2, 64, 2, 1, 32, 64), 16, 4, 128),
        moe(base("olmoe", 2, 64, 2, 2, 32, 64), 32, 4, 0),
    ]
}

/// The preset named `name` (its `arch`).
pub fn preset(name: &str) -> Option<Spec> {
    presets().into_iter().find(|s| s.arch == name)
}

/// A deterministic stream of uniform values in [-1, 1) (SplitMix64).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The synthetic SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens,
/// printable ASCII characters, `▁` and `▁` + each lowercase letter, every lowercase
/// pair, and some words. Returns the pieces and their scores (higher merges first).
pub fn vocab() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let n_special = tokens.len();
    let mut pieces: Vec<String> = (b'!'..=b'~').map(|c| (c as char).to_string()).collect();
    pieces.push("\u{2581}".into());
    let lower = b'a'..=b'z';
    pieces.extend(lower.clone().map(|c| format!("\u{2581}{}", c as char)));
    for a in lower.clone() {
        pieces.extend(lower.clone().map(|b| format!("{}{}", a as char, b as char)));
    }
    const WORDS: &[&str] = &[
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "on", "be",
        "this", "you", "or", "by", "not", "are", "work", "program", "license", "free", "software",
        "code", "any", "under", "copy", "source", "public", "general",
    ];
    pieces.extend(WORDS.iter().map(|w| format!("\u{2581}{w}")));
    pieces.extend(WORDS.iter().filter(|w| w.len() > 2).map(|w| w.to_string()));
    let mut scores = vec![0.0f32; n_special];
    // Longer pieces merge later; ties broken by a fixed scramble of the order.
    let mut noise = Noise(7);
    for p in &pieces {
        scores.push(-(p.chars().count() as f32) * 100.0 - (noise.next() + 1.0) * 40.0);
    }
    types.extend(std::iter::repeat_n(1, pieces.len()));
    tokens.extend(pieces);
    (tokens, scores, types)
}

/// Generates the model `s` as a GGUF file's bytes.
pub fn generate(s: &Spec) -> Result<Vec<u8>> {
    let arch = match s.arch.as_str() {
        "mixtral" => "llama",
        a @ ("llama" | "qwen2" | "qwen3" | "gemma3" | "phi3" | "qwen3moe" | "qwen2moe"
        | "olmoe") => a,
        other => bail!("no generator for architecture '{other}'"),
    };
    if s.n_head == 0 || s.n_head_kv == 0 || !s.n_head.is_multiple_of(s.n_head_kv) {
        bail!("head counts {}/{} do not group", s.n_head, s.n_head_kv);
    }
    let moe = matches!(arch, "qwen3moe" | "qwen2moe" | "olmoe") || s.arch == "mixtral";
    if moe != (s.n_expert > 0) || s.n_expert_used > s.n_expert {
        bail!(
            "{} needs experts ({} with {} used)",
            s.arch,
            s.n_expert,
            s.n_expert_used
        );
    }
    let (n_embd, hd) = (s.n_embd, s.head_dim);
    let (n_q, n_kv) = (s.n_head * hd, s.n_head_kv * hd);
    let (tokens, scores, types) = vocab();
    let n_vocab = tokens.len();

    let mut w = GgufWriter::new();
    let key = |k: &str| format!("{arch}.{k}");
    w.add_kv("general.architecture", arch);
    // (A name containing "phi3" would make llama.cpp look for Phi-3's special tokens.)
    w.add_kv("general.name", "hearth-synth");
    w.add_kv(
        "general.description",
        format!("random weights from hearth-synth ({s:?})"),
    );
    w.add_kv(key("context_length"), 4096u32);
    w.add_kv(key("embedding_length"), n_embd as u32);
    w.add_kv(key("block_count"), s.n_layer as u32);
    w.add_kv(key("feed_forward_length"), s.n_ff as u32);
    w.add_kv(key("attention.head_count"), s.n_head as u32);
    w.add_kv(key("attention.head_count_kv"), s.n_head_kv as u32);
    w.add_kv(key("attention.key_length"), hd as u32);
    w.add_kv(key("attention.value_length"), hd as u32);
    w.add_kv(key("attention.layer_norm_rms_epsilon"), 1e-6f32);
    w.add_kv(
        key("rope.freq_base"),
        if arch == "llama" { 500_000.0f32 } else { 1e6 },
    );
    if s.n_expert > 0 {
        w.add_kv(key("expert_count"), s.n_expert as u32);
        w.add_kv(key("expert_used_count"), s.n_expert_used as u32);
        w.add_kv(key("expert_feed_forward_length"), s.n_ff as u32);
    }
    if s.n_ff_shexp > 0 {
        w.add_kv(
            key("expert_shared_feed_forward_length"),
            s.n_ff_shexp as u32,
        );
    }
    if s.n_swa > 0 {
        w.add_kv(key("attention.sliding_window"), s.n_swa as u32);
        w.add_kv(key("rope.freq_base_swa"), 10_000.0f32);
    }
    w.add_kv("tokenizer.ggml.model", "llama");
    w.add_kv("tokenizer.ggml.tokens", tokens);
    w.add_kv("tokenizer.ggml.scores", scores);
    w.add_kv("tokenizer.ggml.token_type", types);
    w.add_kv("tokenizer.ggml.bos_token_id", 1u32);
    w.add_kv("tokenizer.ggml.eos_token_id", 2u32);
    w.add_kv("tokenizer.ggml.unknown_token_id", 0u32);
    w.add_kv("tokenizer.ggml.add_bos_token", true);
    w.add_kv("tokenizer.ggml.add_eos_token", false);
    w.add_kv("general.file_type", 0u32);

    if arch == "llama" && s.n_expert == 0 {
        // Llama 3.1-style frequency factors: 1 for the fast pairs, 8 for the slow, a ramp
        // between.
        let half = hd / 2;
        let data: Vec<u8> = (0..half)
            .map(|i| {
                let r = ((i as f32 - half as f32 / 4.0) / (half as f32 / 2.0)).clamp(0.0, 1.0);
                1.0 + 7.0 * r
            })
            .flat_map(f32::to_le_bytes)
            .collect();
        w.add_tensor("rope_freqs.weight", [half as u64], GgmlType::F32, data)?;
    }
    let mut noise = Noise(s.seed);
    let mut t = |name: &str, shape: &[usize], scale: f32, offset: f32| -> Result<()> {
        let n: usize = shape.iter().product();
        let data: Vec<u8> = (0..n)
            .flat_map(|_| (offset + scale * noise.next()).to_le_bytes())
            .collect();
        let shape: Vec<u64> = shape.iter().map(|&v| v as u64).collect();
        w.add_tensor(name, shape, GgmlType::F32, data)?;
        Ok(())
    };
    // A matrix `[n_in] -> [n_out]` with unit-variance outputs for unit-variance inputs.
    let m = |n_in: usize| 1.7 / (n_in as f32).sqrt();
    let tied = matches!(arch, "qwen2" | "gemma3");
    // A tied output layer is the embedding: smaller, so that its logits are not peaked.
    t(
        "token_embd.weight",
        &[n_embd, n_vocab],
        if tied { 0.5 } else { 1.0 },
        0.0,
    )?;
    if !tied {
        t("output.weight", &[n_embd, n_vocab], 3.0 * m(n_embd), 0.0)?;
    }
    t("output_norm.weight", &[n_embd], 0.1, 1.0)?;
    for il in 0..s.n_layer {
        let b = |n: &str| format!("blk.{il}.{n}");
        t(&b("attn_norm.weight"), &[n_embd], 0.1, 1.0)?;
        if arch == "phi3" {
            t(
                &b("attn_qkv.weight"),
                &[n_embd, n_q + 2 * n_kv],
                m(n_embd),
                0.0,
            )?;
        } else {
            t(&b("attn_q.weight"), &[n_embd, n_q], m(n_embd), 0.0)?;
            t(&b("attn_k.weight"), &[n_embd, n_kv], m(n_embd), 0.0)?;
            t(&b("attn_v.weight"), &[n_embd, n_kv], m(n_embd), 0.0)?;
        }
        if matches!(arch, "qwen2" | "qwen2moe") {
            t(&b("attn_q.bias"), &[n_q], 0.3, 0.0)?;
            t(&b("attn_k.bias"), &[n_kv], 0.3, 0.0)?;
            t(&b("attn_v.bias"), &[n_kv], 0.3, 0.0)?;
        }
        match arch {
            "qwen3" | "qwen3moe" | "gemma3" => {
                t(&b("attn_q_norm.weight"), &[hd], 0.1, 1.0)?;
                t(&b("attn_k_norm.weight"), &[hd], 0.1, 1.0)?;
            }
            "olmoe" => {
                t(&b("attn_q_norm.weight"), &[n_q], 0.1, 1.0)?;
                t(&b("attn_k_norm.weight"), &[n_kv], 0.1, 1.0)?;
            }
            _ => {}
        }
        t(&b("attn_output.weight"), &[n_q, n_embd], m(n_q), 0.0)?;
        t(&b("ffn_norm.weight"), &[n_embd], 0.1, 1.0)?;
        if arch == "gemma3" {
            t(&b("post_attention_norm.weight"), &[n_embd], 0.1, 1.0)?;
            t(&b("post_ffw_norm.weight"), &[n_embd], 0.1, 1.0)?;
        }
        if s.n_expert > 0 {
            let e = s.n_expert;
            t(
                &b("ffn_gate_inp.weight"),
                &[n_embd, e],
                2.0 * m(n_embd),
                0.0,
            )?;
            t(
                &b("ffn_gate_exps.weight"),
                &[n_embd, s.n_ff, e],
                m(n_embd),
                0.0,
            )?;
            t(
                &b("ffn_up_exps.weight"),
                &[n_embd, s.n_ff, e],
                m(n_embd),
                0.0,
            )?;
            t(
                &b("ffn_down_exps.weight"),
                &[s.n_ff, n_embd, e],
                m(s.n_ff),
                0.0,
            )?;
            if s.n_ff_shexp > 0 {
                let f = s.n_ff_shexp;
                t(&b("ffn_gate_inp_shexp.weight"), &[n_embd], m(n_embd), 0.0)?;
                t(&b("ffn_gate_shexp.weight"), &[n_embd, f], m(n_embd), 0.0)?;
                t(&b("ffn_up_shexp.weight"), &[n_embd, f], m(n_embd), 0.0)?;
                t(&b("ffn_down_shexp.weight"), &[f, n_embd], m(f), 0.0)?;
            }
        } else if arch == "phi3" {
            t(&b("ffn_up.weight"), &[n_embd, 2 * s.n_ff], m(n_embd), 0.0)?;
            t(&b("ffn_down.weight"), &[s.n_ff, n_embd], m(s.n_ff), 0.0)?;
        } else {
            t(&b("ffn_gate.weight"), &[n_embd, s.n_ff], m(n_embd), 0.0)?;
            t(&b("ffn_up.weight"), &[n_embd, s.n_ff], m(n_embd), 0.0)?;
            t(&b("ffn_down.weight"), &[s.n_ff, n_embd], m(s.n_ff), 0.0)?;
        }
    }
    let f32_file = GgufFile::from_bytes(w.to_bytes()?)?;
    if s.ftype == FileType::F32 {
        return Ok(f32_file.bytes().to_vec());
    }
    let opts = QuantizeOptions {
        ftype: s.ftype,
        allow_requantize: false,
    };
    let (out, _) = quantize(&f32_file, &opts, |_, _, _| {})?;
    Ok(out.to_bytes()?)
}
