//! Writes a small but varied valid GGUF file (a fuzzing seed) to the path
//! given as the first argument.
//!
//! `cargo run -p hearth-gguf --example write_seed -- fuzz/seeds/small.gguf`

use hearth_gguf::{Array, GgmlType, GgufWriter, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: write_seed OUTPUT.gguf")?;
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "llama");
    w.add_kv("general.alignment", 32u32);
    w.add_kv("llama.embedding_length", 64u32);
    w.add_kv("llama.rope.freq_base", 10000.0f32);
    w.add_kv("a.i8", -1i8);
    w.add_kv("a.u16", 2u16);
    w.add_kv("a.i16", -3i16);
    w.add_kv("a.i32", -4i32);
    w.add_kv("a.u64", 5u64);
    w.add_kv("a.i64", -6i64);
    w.add_kv("a.f64", 0.5f64);
    w.add_kv("a.bool", true);
    w.add_kv("a.u8", 8u8);
    w.add_kv(
        "tokenizer.ggml.tokens",
        vec!["<s>".to_string(), "</s>".to_string(), "a".to_string()],
    );
    w.add_kv("tokenizer.ggml.scores", vec![0.0f32, 0.0, -1.0]);
    w.add_kv("tokenizer.ggml.token_type", vec![3i32, 3, 1]);
    w.add_kv(
        "a.nested",
        Value::Array(Array::Array(vec![
            Array::U32(vec![1, 2]),
            Array::String(vec!["x".into()]),
        ])),
    );
    let bytes = |n: usize| (0..n).map(|i| (i * 37 % 251) as u8).collect::<Vec<u8>>();
    w.add_tensor(
        "token_embd.weight",
        [32u64, 3],
        GgmlType::Q8_0,
        bytes(3 * 34),
    )?;
    w.add_tensor("blk.0.attn_norm.weight", [32u64], GgmlType::F32, bytes(128))?;
    w.add_tensor(
        "blk.0.ffn_up.weight",
        [256u64, 1],
        GgmlType::Q4_K,
        bytes(144),
    )?;
    w.add_tensor("output_norm.weight", [8u64], GgmlType::F16, bytes(16))?;
    w.write_file(&path)?;
    println!("wrote {path}");
    Ok(())
}
