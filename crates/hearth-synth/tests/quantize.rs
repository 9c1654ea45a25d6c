//! `hearth_model::quantize` on mixture-of-experts models (3-D expert tensors, llama.cpp's
//! per-tensor choices for them, including its rules for 8-expert models): the converted
//! file is byte for byte llama-quantize's, whose hashes `tests/data/synth/quantize.json`
//! records for models generated here.

use hearth_gguf::GgufFile;
use hearth_model::quantize::{quantize, FileType, QuantizeOptions};
use sha2::{Digest, Sha256};

#[test]
fn expert_models_quantize_byte_for_byte_as_llama_quantize() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/synth/quantize.json"
    );
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let (arch, ty) = (
            case["arch"].as_str().unwrap(),
            case["type"].as_str().unwrap(),
        );
        let mut spec = hearth_synth::preset(arch).unwrap();
        (spec.n_embd, spec.n_ff, spec.ftype) = (256, 256, FileType::F32);
        let f32_file = GgufFile::from_bytes(hearth_synth::generate(&spec).unwrap()).unwrap();
        let opts = QuantizeOptions {
            ftype: ty.parse().unwrap(),
            allow_requantize: false,
        };
        let (w, _) = quantize(&f32_file, &opts, |_, _, _| {}).unwrap();
        let sha = format!("{:x}", Sha256::digest(w.to_bytes().unwrap()));
        assert_eq!(sha, case["sha256"].as_str().unwrap(), "{arch} {ty}");
        eprintln!("ran: {arch} {ty}: byte-identical to llama-quantize");
    }
}
