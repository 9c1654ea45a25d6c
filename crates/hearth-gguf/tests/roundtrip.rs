//! Writer -> reader round trips.

mod common;

use common::{small_valid_file, Rng};
use hearth_gguf::{
    Array, GgmlType, GgufError, GgufFile, GgufWriter, Value, ValueType, MAX_ARRAY_DEPTH,
};

fn all_values() -> Vec<(String, Value)> {
    let v: Vec<(&str, Value)> = vec![
        ("s.u8", Value::U8(255)),
        ("s.i8", Value::I8(-128)),
        ("s.u16", Value::U16(65535)),
        ("s.i16", Value::I16(-32768)),
        ("s.u32", Value::U32(u32::MAX)),
        ("s.i32", Value::I32(i32::MIN)),
        ("s.f32", Value::F32(-0.125)),
        ("s.f32_inf", Value::F32(f32::INFINITY)),
        ("s.bool_t", Value::Bool(true)),
        ("s.bool_f", Value::Bool(false)),
        ("s.string", Value::String("héllo wörld ✓".into())),
        ("s.empty_string", Value::String(String::new())),
        ("s.u64", Value::U64(u64::MAX)),
        ("s.i64", Value::I64(i64::MIN)),
        ("s.f64", Value::F64(std::f64::consts::PI)),
        ("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-1, 0, 127]))),
        ("a.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("a.i16", Value::Array(Array::I16(vec![-32768, 32767]))),
        ("a.u32", Value::Array(Array::U32(vec![0, u32::MAX, 12345]))),
        ("a.i32", Value::Array(Array::I32(vec![-5, 5]))),
        ("a.f32", Value::Array(Array::F32(vec![1.0, -2.5, 1e-30]))),
        ("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        (
            "a.string",
            Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()])),
        ),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("a.i64", Value::Array(Array::I64(vec![i64::MIN, i64::MAX]))),
        (
            "a.f64",
            Value::Array(Array::F64(vec![f64::MIN_POSITIVE, -1e300])),
        ),
        ("a.empty_u8", Value::Array(Array::U8(vec![]))),
        ("a.empty_string", Value::Array(Array::String(vec![]))),
        ("a.empty_nested", Value::Array(Array::Array(vec![]))),
        (
            "a.nested",
            Value::Array(Array::Array(vec![
                Array::U32(vec![1, 2]),
                Array::String(vec!["deep".into()]),
                Array::Array(vec![
                    Array::F64(vec![0.5]),
                    Array::Bool(vec![]),
                    Array::Array(vec![]),
                ]),
                Array::I8(vec![]),
            ])),
        ),
    ];
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[test]
fn every_value_type_round_trips_in_order() {
    let mut w = GgufWriter::new();
    for (k, v) in all_values() {
        w.add_kv(k, v);
    }
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.metadata(), &all_values()[..]);
    assert!(f.tensors().is_empty());
    // Every one of the 13 value types occurs at top level and as elements.
    let mut top: Vec<ValueType> = f.metadata().iter().map(|(_, v)| v.value_type()).collect();
    top.sort_by_key(|t| t.as_u32());
    top.dedup();
    assert_eq!(top.len(), 13);
}

#[test]
fn nan_bits_survive() {
    let mut w = GgufWriter::new();
    let nan32 = f32::from_bits(0x7fc0_1234);
    let nan64 = f64::from_bits(0x7ff8_0000_0000_5678);
    w.add_kv("n32", nan32);
    w.add_kv("n64", nan64);
    w.add_kv("n32s", vec![nan32]);
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_f32("n32").unwrap().to_bits(), nan32.to_bits());
    match f.get("n64") {
        Some(Value::F64(x)) => assert_eq!(x.to_bits(), nan64.to_bits()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        f.get_f32_array("n32s").unwrap()[0].to_bits(),
        nan32.to_bits()
    );
}

#[test]
fn getters_convert_sensibly() {
    let mut w = GgufWriter::new();
    w.add_kv("u8", 200u8);
    w.add_kv("i64", 5_000_000_000i64);
    w.add_kv("neg", -1i32);
    w.add_kv("f64", 0.25f64);
    w.add_kv("f32", 0.5f32);
    w.add_kv("b", true);
    w.add_kv("s", "text");
    w.add_kv("toks", vec!["a".to_string()]);
    w.add_kv("f32s", vec![1.0f32]);
    w.add_kv("i32s", vec![-1i32]);
    w.add_kv("u32s", vec![1u32]);
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_u32("u8"), Some(200));
    assert_eq!(f.get_u64("u8"), Some(200));
    assert_eq!(f.get_u32("i64"), None, "does not fit in u32");
    assert_eq!(f.get_u64("i64"), Some(5_000_000_000));
    assert_eq!(f.get_u32("neg"), None);
    assert_eq!(f.get_u64("neg"), None);
    assert_eq!(f.get_i32("neg"), Some(-1));
    assert_eq!(f.get_f32("f64"), Some(0.25));
    assert_eq!(f.get_f32("f32"), Some(0.5));
    assert_eq!(f.get_f32("u8"), None);
    assert_eq!(f.get_bool("b"), Some(true));
    assert_eq!(f.get_bool("u8"), None);
    assert_eq!(f.get_str("s"), Some("text"));
    assert_eq!(f.get_str("u8"), None);
    assert_eq!(f.get_str("missing"), None);
    assert_eq!(f.get_str_array("toks"), Some(&["a".to_string()][..]));
    assert_eq!(f.get_f32_array("f32s"), Some(&[1.0f32][..]));
    assert_eq!(f.get_i32_array("i32s"), Some(&[-1i32][..]));
    assert_eq!(f.get_u32_array("u32s"), Some(&[1u32][..]));
    assert_eq!(f.get_u32_array("i32s"), None);
    assert_eq!(f.get_str_array("s"), None);
}

/// (type, shape) pairs covering scalar, legacy, K and IQ quants.
fn tensor_specs() -> Vec<(GgmlType, Vec<u64>)> {
    vec![
        (GgmlType::F32, vec![5]),
        (GgmlType::F16, vec![3, 3]),
        (GgmlType::BF16, vec![7, 1, 2]),
        (GgmlType::Q4_0, vec![64, 3]),
        (GgmlType::Q4_1, vec![32, 2, 2, 2]),
        (GgmlType::Q8_0, vec![96]),
        (GgmlType::Q4_K, vec![256, 2]),
        (GgmlType::Q6_K, vec![512]),
        (GgmlType::IQ4_XS, vec![256]),
        (GgmlType::I8, vec![1]),
        (GgmlType::F64, vec![2, 1]),
    ]
}

/// (name, shape, type, data) of a tensor that was written.
type Expected = Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>;

fn write_tensors(alignment: u64) -> (Vec<u8>, Expected) {
    let mut w = GgufWriter::new();
    w.set_alignment(alignment).unwrap();
    w.add_kv("general.name", "tensors");
    let mut rng = Rng(42 + alignment);
    let mut expected = Vec::new();
    for (i, (ty, shape)) in tensor_specs().into_iter().enumerate() {
        let rows: u64 = shape[1..].iter().product();
        let n = (ty.row_size(shape[0]).unwrap() * rows) as usize;
        let data = rng.bytes(n);
        let name = format!("blk.{i}.{}", ty.name().to_lowercase());
        w.add_tensor(name.clone(), &shape, ty, data.clone())
            .unwrap();
        expected.push((name, shape, ty, data));
    }
    (w.to_bytes().unwrap(), expected)
}

fn check_tensors(f: &GgufFile, expected: &Expected) {
    let align = f.alignment();
    assert_eq!(f.data_offset() % align, 0);
    assert_eq!(f.tensors().len(), expected.len());
    for (t, (name, shape, ty, data)) in f.tensors().iter().zip(expected) {
        assert_eq!(&t.name, name);
        assert_eq!(&t.shape, shape);
        assert_eq!(t.ggml_type, *ty);
        assert_eq!(t.n_bytes, data.len() as u64);
        assert_eq!(t.n_elements(), shape.iter().product::<u64>());
        assert_eq!(
            t.offset % align,
            0,
            "tensor {name} offset {} not aligned to {align}",
            t.offset
        );
        let bytes = f.tensor_data(t);
        assert_eq!(bytes, &data[..], "data of {name}");
        assert_eq!(f.tensor_bytes(name), Some(&data[..]));
        assert_eq!(f.tensor(name), Some(t));
        // In memory too: file alignment up to 64 bytes.
        assert_eq!(
            bytes.as_ptr() as usize % (align.min(64) as usize),
            0,
            "{name} misaligned in memory"
        );
    }
    assert!(f.tensor("nope").is_none());
}

#[test]
fn tensors_of_many_types_round_trip_default_alignment() {
    let (bytes, expected) = write_tensors(32);
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.alignment(), 32);
    assert!(
        f.get("general.alignment").is_none(),
        "default alignment is not written"
    );
    check_tensors(&f, &expected);
}

#[test]
fn tensors_round_trip_with_other_alignments() {
    for align in [1u64, 8, 64, 256, 4096] {
        let (bytes, expected) = write_tensors(align);
        let f = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(f.alignment(), align);
        assert_eq!(f.get_u32("general.alignment"), Some(align as u32));
        check_tensors(&f, &expected);
    }
}

#[test]
fn file_is_padded_like_llama_cpp() {
    let (bytes, _) = write_tensors(32);
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    // Data section starts aligned; every tensor (the last one included) is
    // followed by padding to the alignment.
    let last = f.tensors().last().unwrap();
    let end = f.data_offset() + last.offset + last.n_bytes;
    assert_eq!(bytes.len() as u64, end.div_ceil(32) * 32);
    // Consecutive tensors are packed at the next aligned offset.
    for pair in f.tensors().windows(2) {
        assert_eq!(
            pair[1].offset,
            (pair[0].offset + pair[0].n_bytes).div_ceil(32) * 32
        );
    }
}

#[test]
fn reading_and_rewriting_gives_identical_bytes() {
    let original = small_valid_file();
    let f = GgufFile::from_bytes(original.clone()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.add_kv(k.clone(), v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(
            t.name.clone(),
            &t.shape,
            t.ggml_type,
            f.tensor_data(t).to_vec(),
        )
        .unwrap();
    }
    assert_eq!(w.to_bytes().unwrap(), original);
    assert_eq!(f.bytes(), &original[..]);
}

#[test]
fn version_2_round_trips() {
    let mut w = GgufWriter::new();
    w.set_version(2).unwrap();
    w.add_kv("k", 1u32);
    w.add_tensor("t", [2u64], GgmlType::F32, vec![0; 8])
        .unwrap();
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.get_u32("k"), Some(1));
    assert_eq!(f.tensors().len(), 1);
}

#[test]
fn write_file_then_open_via_mmap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let (bytes, expected) = write_tensors(64);
    let f0 = GgufFile::from_bytes(bytes.clone()).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f0.metadata() {
        w.add_kv(k.clone(), v.clone());
    }
    for (name, shape, ty, data) in &expected {
        w.add_tensor(name.clone(), shape, *ty, data.clone())
            .unwrap();
    }
    w.write_file(&path).unwrap();
    // Only the final file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.gguf")]);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.bytes(), &bytes[..]);
    check_tensors(&f, &expected);
    // Overwriting an existing file works too.
    GgufWriter::new().write_file(&path).unwrap();
    assert_eq!(GgufFile::open(&path).unwrap().tensors().len(), 0);
}

#[test]
fn open_reports_missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let err = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("missing.gguf"), "{err}");
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
}

#[test]
fn add_kv_replaces_in_place() {
    let mut w = GgufWriter::new();
    w.add_kv("a", 1u32);
    w.add_kv("b", 2u32);
    w.add_kv("a", "now a string");
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(f.get_str("a"), Some("now a string"));
}

#[test]
fn alignment_key_and_setter_agree() {
    let mut w = GgufWriter::new();
    w.add_kv("general.alignment", 128u32);
    assert_eq!(w.alignment(), 128);
    w.add_tensor("t", [1u64], GgmlType::F32, vec![1, 2, 3, 4])
        .unwrap();
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment(), 128);
    assert_eq!(f.data_offset() % 128, 0);

    // An invalid alignment value is refused at write time.
    let mut w = GgufWriter::new();
    w.add_kv("general.alignment", 48u32);
    assert!(matches!(w.to_bytes(), Err(GgufError::BadAlignment { .. })));
    let mut w = GgufWriter::new();
    w.add_kv("general.alignment", "32");
    assert!(matches!(w.to_bytes(), Err(GgufError::BadAlignment { .. })));
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    let e = w
        .add_tensor("t", [32u64], GgmlType::Q4_0, vec![0; 17])
        .unwrap_err();
    assert!(e.to_string().contains("needs 18 bytes"), "{e}");
    assert!(
        w.add_tensor("t", [33u64], GgmlType::Q4_0, vec![0; 18])
            .is_err(),
        "row not a whole block"
    );
    assert!(
        w.add_tensor("t", [0u64], GgmlType::F32, vec![]).is_err(),
        "zero dim"
    );
    assert!(
        w.add_tensor("t", Vec::<u64>::new(), GgmlType::F32, vec![])
            .is_err(),
        "no dims"
    );
    assert!(
        w.add_tensor("t", [1u64, 1, 1, 1, 1], GgmlType::F32, vec![0; 4])
            .is_err(),
        "5 dims"
    );
    assert!(
        w.add_tensor("t", [u64::MAX, 2], GgmlType::F32, vec![])
            .is_err(),
        "overflow"
    );
    w.add_tensor("t", [1u64], GgmlType::F32, vec![0; 4])
        .unwrap();
    let e = w
        .add_tensor("t", [1u64], GgmlType::F32, vec![0; 4])
        .unwrap_err();
    assert!(e.to_string().contains("duplicate tensor name 't'"), "{e}");
    assert!(w.set_alignment(0).is_err());
    assert!(w.set_alignment(24).is_err());
    assert!(w.set_alignment(1 << 33).is_err());
    assert!(w.set_version(1).is_err());
    assert!(w.set_version(4).is_err());
    assert_eq!(w.n_tensors(), 1);

    // Arrays nested deeper than the reader accepts are refused.
    let mut a = Array::U8(vec![1]);
    for _ in 0..MAX_ARRAY_DEPTH {
        a = Array::Array(vec![a]);
    }
    let mut w = GgufWriter::new();
    w.add_kv("deep", a);
    assert!(matches!(w.to_bytes(), Err(GgufError::InvalidInput(_))));
}

#[test]
fn max_depth_nesting_round_trips() {
    let mut a = Array::String(vec!["leaf".into()]);
    for _ in 1..MAX_ARRAY_DEPTH {
        a = Array::Array(vec![a, Array::U8(vec![])]);
    }
    assert_eq!(a.depth(), MAX_ARRAY_DEPTH);
    let mut w = GgufWriter::new();
    w.add_kv("deep", a.clone());
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get_array("deep"), Some(&a));
}

#[test]
fn large_vocabulary_round_trips() {
    let tokens: Vec<String> = (0..60_000).map(|i| format!("tok{i}")).collect();
    let mut w = GgufWriter::new();
    w.add_kv("tokenizer.ggml.tokens", tokens.clone());
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap(),
        &tokens[..]
    );
}

#[test]
fn unaligned_input_buffer_still_parses() {
    // from_bytes copes with a Vec whose data does not start 64-byte aligned.
    let bytes = small_valid_file();
    let mut shifted = Vec::with_capacity(bytes.len() + 1);
    shifted.push(0u8);
    shifted.extend_from_slice(&bytes);
    let v: Vec<u8> = shifted[1..].to_vec();
    let f = GgufFile::from_bytes(v).unwrap();
    assert_eq!(f.bytes(), &bytes[..]);
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).as_ptr() as usize % 32, 0);
    }
}

#[test]
fn foreign_tensor_info_gives_empty_slice() {
    let f = GgufFile::from_bytes(small_valid_file()).unwrap();
    let mut t = f.tensors()[0].clone();
    t.offset = u64::MAX - 3;
    assert!(f.tensor_data(&t).is_empty());
    t.offset = 1 << 40;
    assert!(f.tensor_data(&t).is_empty());
}
