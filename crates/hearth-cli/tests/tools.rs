//! `hearth bench` and `hearth quantize` end to end on the real default model: the bench
//! output's structure (never its times), and quantized files compared byte for byte with
//! what llama.cpp's quantizer writes from the same input.

mod common;

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use common::{assert_clean_error, hearth, model_path, stdout};

#[test]
fn bench_json_has_one_object_per_test_with_llama_bench_fields() {
    let m = model_path();
    let o = hearth(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "-t",
        "1",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("one JSON array");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, (n_prompt, n_gen)) in rows.iter().zip([(16, 0), (0, 4)]) {
        assert_eq!(row["n_prompt"], n_prompt);
        assert_eq!(row["n_gen"], n_gen);
        assert_eq!(row["n_depth"], 0);
        assert_eq!(row["n_threads"], 1);
        assert_eq!(row["model_filename"], m.to_str().unwrap());
        assert_eq!(row["model_type"], "llama 135M Q4_1");
        assert_eq!(row["model_n_params"], 134_515_008u64);
        assert_eq!(row["model_size"], 96_576_768u64); // the tensor data, without metadata
        assert_eq!(row["type_k"], "f16");
        let samples_ns = row["samples_ns"].as_array().unwrap();
        let samples_ts = row["samples_ts"].as_array().unwrap();
        assert_eq!((samples_ns.len(), samples_ts.len()), (2, 2));
        // Each rate is the test's token count over its time, and the mean is their mean.
        let n = (n_prompt + n_gen) as f64;
        for (ns, ts) in samples_ns.iter().zip(samples_ts) {
            let (ns, ts) = (ns.as_f64().unwrap(), ts.as_f64().unwrap());
            assert!((ts - 1e9 * n / ns).abs() <= 1e-9 * ts);
        }
        let mean = samples_ts.iter().map(|x| x.as_f64().unwrap()).sum::<f64>() / 2.0;
        assert!((row["avg_ts"].as_f64().unwrap() - mean).abs() <= 1e-9 * mean);
        assert!(row["stddev_ts"].as_f64().unwrap() >= 0.0);
        assert!(row["avg_ns"].as_u64().is_some() && row["stddev_ns"].as_u64().is_some());
    }
}

#[test]
fn bench_markdown_is_llama_bench_table() {
    let m = model_path();
    let o = hearth(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "1,2",
        "-d",
        "0,4",
    ]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "| model                          |       size |     params | backend    | threads |            test |                  t/s |"
    );
    assert_eq!(
        lines[1],
        "| ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: |"
    );
    // threads x depth x (pp, tg), in llama-bench's order.
    let tests: Vec<(String, String)> = lines[2..10]
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 9, "{l}");
            assert_eq!(cells[1], "llama 135M Q4_1");
            assert_eq!(cells[2], "92.10 MiB");
            assert_eq!(cells[3], "134.52 M");
            assert_eq!(cells[4], "CPU");
            let (mean, sd) = cells[7].split_once(" ± ").expect("mean ± stddev");
            assert!(mean.parse::<f64>().unwrap() > 0.0 && sd.parse::<f64>().unwrap() >= 0.0);
            (cells[5].to_string(), cells[6].to_string())
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("1", "pp8"),
        ("1", "tg2"),
        ("1", "pp8 @ d4"),
        ("1", "tg2 @ d4"),
        ("2", "pp8"),
        ("2", "tg2"),
        ("2", "pp8 @ d4"),
        ("2", "tg2 @ d4"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(tests, want);
    assert_eq!(lines[10], "");
    assert!(lines[11].starts_with("build: hearth "));
}

#[test]
fn bench_jsonl_and_kv_type_column() {
    let m = model_path();
    let o = hearth(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "0",
        "-r",
        "1",
        "-t",
        "1",
        "-o",
        "jsonl",
        "--kv-cache-type",
        "f32",
    ]);
    let out = stdout(&o);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["n_prompt"].as_u64(), rows[0]["n_gen"].as_u64()),
        (Some(8), Some(0))
    );
    assert_eq!(rows[0]["type_k"], "f32");

    let o = hearth(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "0",
        "-n",
        "1",
        "-r",
        "1",
        "-t",
        "1",
        "--kv-cache-type",
        "f32",
    ]);
    let out = stdout(&o);
    let head: Vec<&str> = out
        .lines()
        .next()
        .unwrap()
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(head[6..8], ["type_k", "type_v"]);
    assert!(out.lines().nth(2).unwrap().contains("|    f32 |    f32 |"));
}

#[test]
fn bench_n_parallel_counts_every_sequence() {
    let m = model_path();
    let args = [
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "4",
        "-n",
        "3",
        "-r",
        "2",
        "-t",
        "2",
        "-d",
        "5",
        "--n-parallel",
        "1,4",
    ];
    let o = hearth(&[&args[..], &["-o", "json"]].concat());
    let v: Value = serde_json::from_str(&stdout(&o)).expect("one JSON array");
    let rows = v.as_array().unwrap();
    // The pp test once; each tg test once per --n-parallel value.
    let tests: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["n_prompt"].as_u64().unwrap(),
                r["n_gen"].as_u64().unwrap(),
                r["n_parallel"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tests, [(4, 0, 1), (0, 3, 1), (0, 3, 4)]);
    for row in rows {
        // A rate counts the tokens of all the sequences.
        let n = (row["n_prompt"].as_u64().unwrap()
            + row["n_gen"].as_u64().unwrap() * row["n_parallel"].as_u64().unwrap())
            as f64;
        for (ns, ts) in row["samples_ns"]
            .as_array()
            .unwrap()
            .iter()
            .zip(row["samples_ts"].as_array().unwrap())
        {
            let (ns, ts) = (ns.as_f64().unwrap(), ts.as_f64().unwrap());
            assert!((ts - 1e9 * n / ns).abs() <= 1e-9 * ts);
        }
    }
    let out = stdout(&hearth(&args));
    let names: Vec<&str> = out
        .lines()
        .skip(2)
        .take(3)
        .map(|l| l.split('|').map(str::trim).nth(6).unwrap())
        .collect();
    assert_eq!(names, ["pp4 @ d5", "tg3 @ d5", "tg3 x4 @ d5"]);
}

#[test]
fn bench_bad_arguments_are_one_line_errors() {
    assert_clean_error(&hearth(&["bench", "-r", "0"]), "--repetitions");
    assert_clean_error(
        &hearth(&["bench", "-p", "0", "-n", "0"]),
        "nothing to benchmark",
    );
    assert_clean_error(
        &hearth(&["bench", "-m", "/no/such/model.gguf"]),
        "does not exist",
    );
    assert_clean_error(&hearth(&["bench", "-t", "0"]), "--threads");
    assert_clean_error(&hearth(&["bench", "--n-parallel", "0"]), "--n-parallel");
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The default Q4_1 model converted to F16 and from there to Q4_K_M and Q8_0 gives the
/// very files llama.cpp's `llama-quantize` writes (the digests were taken from its output
/// for the same inputs): same metadata, tensor order, types per tensor and bytes.
#[test]
fn quantize_matches_llama_cpp_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let f16 = dir.path().join("f16.gguf");
    let m = model_path();
    let o = hearth(&[
        "quantize",
        "--allow-requantize",
        "-t",
        "2",
        m.to_str().unwrap(),
        f16.to_str().unwrap(),
        "F16",
    ]);
    let out = stdout(&o);
    assert!(out.contains("272 tensors: 211 F16, 61 F32"), "{out}");
    assert_eq!(
        sha256(&f16),
        "a269e3181fcbb25046f99f64ba8d3c159165b211c2ff4ffca7ba1bb219d2ccd0"
    );

    for (ty, digest, summary) in [
        (
            "Q4_K_M",
            "27e1496775b07d69415cc5b6658f448ded3829cd2d769473cf2781e77d020b19",
            "61 F32, 16 Q4_K, 166 Q5_0, 14 Q6_K, 15 Q8_0",
        ),
        (
            "q8_0",
            "f7933c716a5b5334c54b997d1f6db3f38a0786c9046ac5f46311b396a3f1fe54",
            "61 F32, 211 Q8_0",
        ),
    ] {
        let q = dir.path().join(format!("{ty}.gguf"));
        let out = stdout(&hearth(&[
            "quantize",
            "-t",
            "2",
            f16.to_str().unwrap(),
            q.to_str().unwrap(),
            ty,
        ]));
        assert!(out.contains(summary), "{out}");
        assert_eq!(sha256(&q), digest, "{ty}");
    }
    // Only the finished files: no temporary file is left in the directory.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Q4_K_M.gguf", "f16.gguf", "q8_0.gguf"]);
}

#[test]
fn quantize_bad_input_is_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_path();
    let out = dir.path().join("out.gguf");
    let o = hearth(&[
        "quantize",
        m.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q8_0",
    ]);
    assert_clean_error(&o, "--allow-requantize");
    assert!(!out.exists());
    assert_clean_error(
        &hearth(&[
            "quantize",
            m.to_str().unwrap(),
            out.to_str().unwrap(),
            "Q7_7",
        ]),
        "unknown quantization type 'Q7_7'",
    );

    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&m).unwrap();
    // Cut in the metadata, and in the tensor data.
    for (len, needle) in [
        (4096, "invalid GGUF file"),
        (bytes.len() / 2, "exceeds the"),
    ] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let o = hearth(&[
            "quantize",
            "--allow-requantize",
            cut.to_str().unwrap(),
            out.to_str().unwrap(),
            "Q8_0",
        ]);
        assert_clean_error(&o, needle);
        assert!(!out.exists());
    }
}
