//! hearth-gguf: reading and writing GGUF files (versions 2 and 3).
//!
//! This crate handles the file format only: the header, typed metadata
//! (all 13 value types, including nested arrays), the tensor index, the
//! alignment and the data section. [`GgufFile`] memory-maps a file (or owns
//! an in-memory buffer) and validates it completely up front, so that every
//! accessor afterwards is cheap and infallible. Parsing never panics on
//! hostile input: every length, count, offset and shape is checked against
//! the bytes actually present before it is used or anything is allocated.
//!
//! [`GgufWriter`] produces files that [`GgufFile`] (and llama.cpp) read back.
//!
//! ```
//! use hearth_gguf::{GgmlType, GgufFile, GgufWriter, Value};
//!
//! let mut w = GgufWriter::new();
//! w.add_kv("general.architecture", "llama");
//! w.add_tensor("t", [4u64, 2], GgmlType::F32, vec![0u8; 32]).unwrap();
//! let bytes = w.to_bytes().unwrap();
//!
//! let f = GgufFile::from_bytes(bytes).unwrap();
//! assert_eq!(f.get_str("general.architecture"), Some("llama"));
//! let t = f.tensor("t").unwrap();
//! assert_eq!(t.n_elements(), 8);
//! assert_eq!(f.tensor_data(t).len(), 32);
//! ```

mod error;
mod reader;
mod types;
mod value;
mod writer;

pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the data section and of tensor offsets when the file has no
/// `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;

/// The deepest nesting of arrays accepted in metadata (an array of scalars
/// has depth 1, an array of such arrays depth 2, ...).
pub const MAX_ARRAY_DEPTH: usize = 16;

/// Oldest and newest supported GGUF versions.
pub const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 2..=3;
