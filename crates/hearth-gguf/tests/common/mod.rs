//! Helpers shared by the integration tests.
#![allow(dead_code)]

use hearth_gguf::{Array, GgmlType, GgufWriter, Value};

/// A tiny deterministic PRNG (xorshift64*) for filler bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A raw little-endian byte builder for hand-made (often hostile) files.
#[derive(Default, Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version, tensor count, kv count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.raw_str(s.as_bytes())
    }
    pub fn raw_str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A key with a u32 value.
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    /// A key with a string value.
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.str(key).u32(8).str(v)
    }
    /// A tensor info entry.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn build(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// A small but varied valid file: every scalar type, strings, arrays
/// (including nested ones) and three tensors of different types. The last
/// tensor's size is a multiple of 32, so the file ends exactly where its data
/// ends (every strict prefix is invalid).
pub fn small_valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "llama");
    w.add_kv("a.u8", 7u8);
    w.add_kv("a.i8", -7i8);
    w.add_kv("a.u16", 700u16);
    w.add_kv("a.i16", -700i16);
    w.add_kv("a.u32", 70_000u32);
    w.add_kv("a.i32", -70_000i32);
    w.add_kv("a.f32", 1.5f32);
    w.add_kv("a.bool", true);
    w.add_kv("a.u64", 1u64 << 40);
    w.add_kv("a.i64", -(1i64 << 40));
    w.add_kv("a.f64", -2.25f64);
    w.add_kv(
        "a.tokens",
        vec!["<s>".to_string(), "hé".to_string(), String::new()],
    );
    w.add_kv("a.scores", vec![0.5f32, -1.0]);
    w.add_kv("a.flags", vec![true, false]);
    w.add_kv(
        "a.nested",
        Value::Array(Array::Array(vec![
            Array::I32(vec![1, 2, 3]),
            Array::String(vec!["x".into()]),
            Array::Array(vec![Array::U8(vec![9])]),
        ])),
    );
    let mut rng = Rng(0x1234_5678);
    w.add_tensor("q4", [64u64, 2], GgmlType::Q4_0, rng.bytes(2 * 36))
        .unwrap();
    w.add_tensor("f16", [3u64], GgmlType::F16, rng.bytes(6))
        .unwrap();
    w.add_tensor("f32", [4u64, 2], GgmlType::F32, rng.bytes(32))
        .unwrap();
    w.to_bytes().unwrap()
}
