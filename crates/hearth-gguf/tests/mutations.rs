//! Property test: random mutations of a valid file never make the parser
//! panic (it returns `Ok` or `Err`), and whatever it accepts is consistent.

mod common;

use common::small_valid_file;
use hearth_gguf::GgufFile;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { pos: usize, bit: u8 },
    SetByte { pos: usize, byte: u8 },
    Insert { pos: usize, bytes: Vec<u8> },
    Delete { pos: usize, len: usize },
    Truncate { len: usize },
    OverwriteU64 { pos: usize, value: u64 },
    OverwriteU32 { pos: usize, value: u32 },
}

fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(i64::MAX as u64),
        Just(1 << 32),
        Just(1 << 63),
        Just(u32::MAX as u64),
        0u64..4096,
        any::<u64>(),
    ]
}

fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(1 << 31),
        0u32..40,
        any::<u32>()
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are taken modulo the current length when applied.
    let pos = any::<usize>();
    prop_oneof![
        (pos, 0u8..8).prop_map(|(pos, bit)| Mutation::FlipBit { pos, bit }),
        (pos, any::<u8>()).prop_map(|(pos, byte)| Mutation::SetByte { pos, byte }),
        (pos, prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(pos, bytes)| Mutation::Insert { pos, bytes }),
        (pos, 1usize..16).prop_map(|(pos, len)| Mutation::Delete { pos, len }),
        pos.prop_map(|len| Mutation::Truncate { len }),
        (pos, extreme_u64()).prop_map(|(pos, value)| Mutation::OverwriteU64 { pos, value }),
        (pos, extreme_u32()).prop_map(|(pos, value)| Mutation::OverwriteU32 { pos, value }),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let len = buf.len();
    if len == 0 {
        if let Mutation::Insert { bytes, .. } = m {
            buf.extend_from_slice(bytes);
        }
        return;
    }
    match m {
        Mutation::FlipBit { pos, bit } => buf[pos % len] ^= 1 << bit,
        Mutation::SetByte { pos, byte } => buf[pos % len] = *byte,
        Mutation::Insert { pos, bytes } => {
            let at = pos % (len + 1);
            buf.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { pos, len: n } => {
            let at = pos % len;
            let end = (at + n).min(len);
            buf.drain(at..end);
        }
        Mutation::Truncate { len: n } => buf.truncate(n % len),
        Mutation::OverwriteU64 { pos, value } => {
            let at = pos % len;
            let end = (at + 8).min(len);
            buf[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
        }
        Mutation::OverwriteU32 { pos, value } => {
            let at = pos % len;
            let end = (at + 4).min(len);
            buf[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
        }
    }
}

/// Whatever parses must satisfy the invariants the accessors rely on.
fn check_consistent(f: &GgufFile) {
    let len = f.bytes().len() as u64;
    assert!(f.alignment().is_power_of_two());
    assert_eq!(f.data_offset() % f.alignment(), 0);
    for t in f.tensors() {
        assert!(!t.shape.is_empty() && t.shape.len() <= 4);
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
        assert!(f.data_offset() + t.offset + t.n_bytes <= len);
        assert!(f.tensor(&t.name).is_some_and(|got| std::ptr::eq(got, t)));
    }
    for (k, v) in f.metadata() {
        // Same entry (values may hold NaN, so compare identity, not equality).
        assert!(f.get(k).is_some_and(|got| std::ptr::eq(got, v)));
    }
}

proptest! {
    // ~100k parses of a ~700-byte file: a few seconds in the optimized test build.
    #![proptest_config(ProptestConfig {
        cases: 60_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_files_never_panic(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut buf = small_valid_file();
        for m in &mutations {
            apply(&mut buf, m);
        }
        if let Ok(f) = GgufFile::from_bytes(buf) {
            check_consistent(&f);
        }
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        version in 2u32..=3,
        n_tensors in extreme_u64(),
        n_kv in extreme_u64(),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut buf = b"GGUF".to_vec();
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&(n_tensors % 8).to_le_bytes());
        buf.extend_from_slice(&(n_kv % 8).to_le_bytes());
        buf.extend_from_slice(&tail);
        if let Ok(f) = GgufFile::from_bytes(buf) {
            check_consistent(&f);
        }
    }
}
