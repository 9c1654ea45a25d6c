//! Hand-built hostile files: each must give a clear `Err`, never a panic.

mod common;

use common::{small_valid_file, Raw};
use hearth_gguf::{GgufError, GgufFile};

fn parse(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(bytes)
}

fn err(bytes: Vec<u8>) -> GgufError {
    match parse(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e,
    }
}

/// A valid file with one F32 tensor of `n` elements named "t", laid out by hand.
fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 1);
    r.kv_str("general.architecture", "llama");
    r.tensor("t", dims, ty, offset).pad(32).zeros(data);
    r.build()
}

#[test]
fn hand_built_baseline_is_valid() {
    // Sanity check that the builders produce valid files, so the failures
    // below are due to the one thing each test breaks.
    let f = parse(one_tensor(&[8], 0, 0, 32)).unwrap();
    assert_eq!(f.tensors()[0].n_bytes, 32);
    assert_eq!(f.data_offset() % 32, 0);
    let f = parse(small_valid_file()).unwrap();
    assert_eq!(f.tensors().len(), 3);
}

#[test]
fn wrong_magic() {
    let mut b = small_valid_file();
    b[0..4].copy_from_slice(b"GGML");
    let e = err(b);
    assert!(
        matches!(e, GgufError::BadMagic { found } if &found == b"GGML"),
        "{e}"
    );
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
}

#[test]
fn version_1_is_rejected() {
    let mut b = small_valid_file();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = err(b);
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("unsupported GGUF version 1"), "{e}");
}

#[test]
fn version_4_is_rejected() {
    let mut b = small_valid_file();
    b[4..8].copy_from_slice(&4u32.to_le_bytes());
    let e = err(b);
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 4, .. }),
        "{e}"
    );
}

#[test]
fn big_endian_file_is_named_as_such() {
    let mut b = small_valid_file();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    let e = err(b);
    assert!(e.to_string().contains("big-endian"), "{e}");
}

#[test]
fn empty_and_tiny_files() {
    for n in 0..24 {
        let b = small_valid_file()[..n].to_vec();
        let e = err(b);
        assert!(
            matches!(
                e,
                GgufError::Truncated { .. } | GgufError::CountTooLarge { .. }
            ),
            "{n}: {e}"
        );
    }
    let e = err(b"GGUF\x03\x00\x00\x00\x00\x00\x00\x00".to_vec());
    assert_eq!(
        e.to_string(),
        "truncated GGUF file: needed 8 bytes for tensor count at offset 8, file has 12 bytes"
    );
}

#[test]
fn truncated_at_every_byte_offset() {
    let full = small_valid_file();
    parse(full.clone()).unwrap();
    for cut in 0..full.len() {
        let r = std::panic::catch_unwind(|| parse(full[..cut].to_vec()));
        match r {
            Ok(Ok(_)) => panic!("file cut at {cut} of {} bytes parsed as valid", full.len()),
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => panic!("parser panicked on file cut at {cut}"),
        }
    }
}

#[test]
fn huge_string_length() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).bytes(b"key").zeros(16);
    let e = err(r.build());
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                needed: u64::MAX,
                offset: 32,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("metadata key #0"), "{e}");

    // In a value and just one byte too long.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(4).bytes(b"abc");
    let e = err(r.build());
    assert!(e.to_string().contains("metadata value of key 'k'"), "{e}");
}

#[test]
fn huge_array_count() {
    for (elem_type, count) in [
        (0u32, u64::MAX),
        (4, 1 << 62),
        (8, 1 << 40),
        (9, 1000),
        (12, 3),
    ] {
        let mut r = Raw::header(3, 0, 1);
        r.str("arr").u32(9).u32(elem_type).u64(count).zeros(16);
        let e = err(r.build());
        assert!(
            matches!(e, GgufError::CountTooLarge { .. }),
            "type {elem_type}: {e}"
        );
        assert!(
            e.to_string()
                .contains("element count of metadata value of key 'arr'"),
            "{e}"
        );
    }
}

#[test]
fn huge_tensor_count() {
    let mut r = Raw::header(3, u64::MAX, 0);
    r.zeros(64);
    let e = err(r.build());
    assert!(
        matches!(
            e,
            GgufError::CountTooLarge {
                count: u64::MAX,
                offset: 8,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("tensor count"), "{e}");

    // Plausible against the whole file, not against what is left after metadata.
    let mut r = Raw::header(3, 3, 1);
    r.str("k").u32(8).str(&"x".repeat(64));
    r.zeros(40);
    let e = err(r.build());
    assert!(
        matches!(e, GgufError::CountTooLarge { count: 3, .. }),
        "{e}"
    );
}

#[test]
fn huge_kv_count() {
    let mut r = Raw::header(3, 0, 1 << 50);
    r.kv_u32("a", 1);
    let e = err(r.build());
    assert!(
        matches!(e, GgufError::CountTooLarge { offset: 16, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("metadata key/value count"), "{e}");
}

#[test]
fn unknown_value_type() {
    let mut r = Raw::header(3, 0, 1);
    r.str("weird").u32(13).u32(0);
    let e = err(r.build());
    assert!(
        matches!(
            e,
            GgufError::UnknownValueType {
                type_id: 13,
                offset: 37,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("'weird'"), "{e}");

    // As an array element type.
    let mut r = Raw::header(3, 0, 1);
    r.str("arr").u32(9).u32(0xdead).u64(0);
    let e = err(r.build());
    assert!(
        matches!(
            e,
            GgufError::UnknownValueType {
                type_id: 0xdead,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unknown_tensor_type() {
    for ty in [4u32, 5, 31, 36, 40, u32::MAX] {
        let e = err(one_tensor(&[8], ty, 0, 64));
        assert!(
            matches!(e, GgufError::UnknownTensorType { type_id, .. } if type_id == ty),
            "{e}"
        );
        assert!(e.to_string().contains("tensor 't'"), "{e}");
    }
}

#[test]
fn overflowing_dims() {
    let cases: [&[u64]; 5] = [
        &[u64::MAX],
        &[u64::MAX, 2],
        &[1 << 32, 1 << 32],
        &[1 << 62], // fits i64 as elements, 2^64 bytes as F32
        &[2, 2, 1 << 31, 1 << 31],
    ];
    for dims in cases {
        let e = err(one_tensor(dims, 0, 0, 64));
        assert!(
            matches!(e, GgufError::InvalidTensor { .. }),
            "{dims:?}: {e}"
        );
        assert!(e.to_string().contains("overflows"), "{e}");
    }
}

#[test]
fn zero_dim() {
    let e = err(one_tensor(&[8, 0], 0, 0, 64));
    assert!(e.to_string().contains("dimension 1 is 0"), "{e}");
}

#[test]
fn n_dims_zero() {
    let e = err(one_tensor(&[], 0, 0, 64));
    assert!(matches!(e, GgufError::InvalidTensor { .. }), "{e}");
    assert!(e.to_string().contains("has 0 dimensions"), "{e}");
}

#[test]
fn n_dims_above_four() {
    let e = err(one_tensor(&[1, 1, 1, 1, 2], 0, 0, 64));
    assert!(e.to_string().contains("has 5 dimensions"), "{e}");
    // A huge n_dims does not make the parser read or allocate dims.
    let mut r = Raw::header(3, 1, 0);
    r.str("t").u32(u32::MAX).zeros(64);
    let e = err(r.build());
    assert!(e.to_string().contains("4294967295 dimensions"), "{e}");
}

#[test]
fn row_not_a_multiple_of_block_size() {
    let e = err(one_tensor(&[33, 2], 2, 0, 128)); // Q4_0
    assert!(
        e.to_string()
            .contains("not a multiple of the Q4_0 block size 32"),
        "{e}"
    );
    let e = err(one_tensor(&[128], 12, 0, 256)); // Q4_K needs 256
    assert!(e.to_string().contains("Q4_K block size 256"), "{e}");
}

#[test]
fn out_of_file_tensor() {
    // 8 F32 = 32 bytes, only 31 present.
    let e = err(one_tensor(&[8], 0, 0, 31));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    assert!(e.to_string().contains("tensor 't'"), "{e}");
    // Offset beyond the end, and an offset that would overflow when added.
    let e = err(one_tensor(&[8], 0, 64, 64));
    assert!(
        matches!(
            e,
            GgufError::TensorOutOfBounds {
                data_offset: 64,
                ..
            }
        ),
        "{e}"
    );
    let e = err(one_tensor(&[8], 0, u64::MAX - 31, 64));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    // Data section itself past the end of the file.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1], 0, 0);
    let e = err(r.build());
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
}

#[test]
fn overlapping_tensors() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .pad(32)
        .zeros(96);
    let e = err(r.build());
    assert!(matches!(e, GgufError::OverlappingTensors { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("'a'") && msg.contains("'b'"), "{msg}");

    // Same offset, listed in reverse order.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 32)
        .tensor("b", &[8], 0, 32)
        .pad(32)
        .zeros(96);
    assert!(matches!(
        err(r.build()),
        GgufError::OverlappingTensors { .. }
    ));

    // Adjacent (touching) tensors are fine, in any order.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 32)
        .tensor("b", &[8], 0, 0)
        .pad(32)
        .zeros(64);
    parse(r.build()).unwrap();
}

#[test]
fn misaligned_offset() {
    let e = err(one_tensor(&[8], 0, 4, 64));
    assert!(
        matches!(
            e,
            GgufError::MisalignedTensor {
                data_offset: 4,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("tensor 't'"), "{e}");

    // With general.alignment = 8 the same offset is misaligned, 8 is fine.
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 8)
        .tensor("t", &[2], 0, 4)
        .pad(8)
        .zeros(16);
    assert!(matches!(
        err(r.build()),
        GgufError::MisalignedTensor { alignment: 8, .. }
    ));
    let mut r = Raw::header(3, 1, 1);
    r.kv_u32("general.alignment", 8)
        .tensor("t", &[2], 0, 8)
        .pad(8)
        .zeros(16);
    let f = parse(r.build()).unwrap();
    assert_eq!(f.alignment(), 8);
    assert_eq!(f.data_offset() % 8, 0);
}

#[test]
fn duplicate_tensor_name() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    let e = err(r.build());
    assert!(
        matches!(e, GgufError::DuplicateTensor { ref tensor, offset: 57 } if tensor == "w"),
        "{e}"
    );
}

#[test]
fn duplicate_key() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("general.x", 1).kv_str("general.x", "again");
    let e = err(r.build());
    assert!(
        matches!(e, GgufError::DuplicateKey { ref key, offset: 49 } if key == "general.x"),
        "{e}"
    );
}

#[test]
fn non_utf8_key() {
    let mut r = Raw::header(3, 0, 1);
    r.raw_str(b"bad\xff\xfekey").u32(4).u32(1);
    let e = err(r.build());
    assert!(
        matches!(e, GgufError::InvalidUtf8 { offset: 32, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("metadata key #0"), "{e}");
}

#[test]
fn non_utf8_value_and_tensor_name() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(8).u64(2).str("ok").raw_str(b"\xc3");
    let e = err(r.build());
    assert!(
        e.to_string()
            .contains("string 1 of metadata value of key 'k'"),
        "{e}"
    );

    let mut r = Raw::header(3, 1, 0);
    r.raw_str(b"\x80")
        .u32(1)
        .u64(8)
        .u32(0)
        .u64(0)
        .pad(32)
        .zeros(32);
    let e = err(r.build());
    assert!(e.to_string().contains("name of tensor #0"), "{e}");
}

#[test]
fn bad_alignment_value() {
    for a in [0u32, 3, 48, 0x8000_0001] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        let e = err(r.build());
        assert!(matches!(e, GgufError::BadAlignment { .. }), "{a}: {e}");
        assert!(e.to_string().contains(&format!("is {a}")), "{e}");
    }
    // Wrong type or negative.
    let mut r = Raw::header(3, 0, 1);
    r.kv_str("general.alignment", "32");
    let e = err(r.build());
    assert!(e.to_string().contains("has type string"), "{e}");
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(5).u32(-32i32 as u32);
    assert!(err(r.build()).to_string().contains("negative"));
    // Too large for u32.
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(10).u64(1 << 40);
    assert!(matches!(err(r.build()), GgufError::BadAlignment { .. }));
    // Other integer types holding a valid power of two are accepted.
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(10).u64(64);
    assert_eq!(parse(r.build()).unwrap().alignment(), 64);
}

#[test]
fn too_deeply_nested_arrays() {
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..100 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    let e = err(r.build());
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    assert!(e.to_string().contains("'deep'"), "{e}");
}

#[test]
fn invalid_bool() {
    let mut r = Raw::header(3, 0, 1);
    r.str("b").u32(7).u8(2);
    let e = err(r.build());
    assert!(
        matches!(
            e,
            GgufError::InvalidBool {
                byte: 2,
                offset: 37,
                ..
            }
        ),
        "{e}"
    );
    let mut r = Raw::header(3, 0, 1);
    r.str("b").u32(9).u32(7).u64(3).bytes(&[0, 1, 7]);
    let e = err(r.build());
    assert!(
        matches!(
            e,
            GgufError::InvalidBool {
                byte: 7,
                offset: 51,
                ..
            }
        ),
        "{e}"
    );
}

/// Every byte position overwritten with extreme u32 / u64 values, and single
/// bit flips everywhere: parse must return (Ok or Err), never panic.
#[test]
fn exhaustive_field_overwrites_and_bit_flips() {
    let base = small_valid_file();
    let u64s = [
        0u64,
        1,
        31,
        32,
        u64::MAX,
        u64::MAX - 1,
        i64::MAX as u64,
        1 << 32,
        1 << 63,
        base.len() as u64,
    ];
    let u32s = [0u32, 1, 4, 5, 9, 13, u32::MAX, 0x8000_0000];
    let mut outcomes = [0usize; 2];
    for pos in 0..base.len() {
        for v in u64s {
            let mut b = base.clone();
            let end = (pos + 8).min(b.len());
            b[pos..end].copy_from_slice(&v.to_le_bytes()[..end - pos]);
            outcomes[parse(b).is_ok() as usize] += 1;
        }
        for v in u32s {
            let mut b = base.clone();
            let end = (pos + 4).min(b.len());
            b[pos..end].copy_from_slice(&v.to_le_bytes()[..end - pos]);
            outcomes[parse(b).is_ok() as usize] += 1;
        }
        for bit in 0..8 {
            let mut b = base.clone();
            b[pos] ^= 1 << bit;
            outcomes[parse(b).is_ok() as usize] += 1;
        }
    }
    // Both outcomes occur (tensor data bytes can change freely).
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
