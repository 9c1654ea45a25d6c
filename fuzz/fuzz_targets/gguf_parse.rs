//! Fuzz target: the GGUF parser must return Ok or Err on any input, never
//! panic, read out of bounds or allocate without limit.
#![no_main]

use hearth_gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        // Exercise the accessors on whatever was accepted.
        let len = f.bytes().len() as u64;
        for t in f.tensors() {
            let bytes = f.tensor_data(t);
            assert_eq!(bytes.len() as u64, t.n_bytes);
            assert!(f.data_offset() + t.offset + t.n_bytes <= len);
        }
        for (k, _) in f.metadata() {
            assert!(f.get(k).is_some());
        }
    }
});
