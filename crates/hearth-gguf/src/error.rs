//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing a GGUF file.
///
/// Offsets are byte offsets from the start of the file (for tensor data
/// offsets, from the start of the data section, as stated in the message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An I/O operation on a path failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing to a stream failed.
    #[error("failed writing GGUF data: {0}")]
    Write(#[source] io::Error),

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: bad magic {found:02x?} (expected \"GGUF\" = [47, 47, 55, 46])")]
    BadMagic { found: [u8; 4] },

    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {version}{hint} (supported: 2, 3)")]
    UnsupportedVersion { version: u32, hint: &'static str },

    /// The file ends before a field it needs.
    #[error("truncated GGUF file: needed {needed} bytes for {what} at offset {offset}, file has {file_len} bytes")]
    Truncated {
        what: String,
        needed: u64,
        offset: u64,
        file_len: u64,
    },

    /// A count or length cannot possibly be satisfied by the rest of the file.
    #[error("invalid GGUF file: {what} is {count} at offset {offset}, but each needs at least {min_each} bytes and only {remaining} bytes remain")]
    CountTooLarge {
        what: String,
        count: u64,
        offset: u64,
        min_each: u64,
        remaining: u64,
    },

    /// A metadata value has an unknown type id.
    #[error("invalid GGUF file: unknown value type {type_id} for {what} at offset {offset}")]
    UnknownValueType {
        what: String,
        type_id: u32,
        offset: u64,
    },

    /// A string is not valid UTF-8.
    #[error("invalid GGUF file: {what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },

    /// A boolean byte is neither 0 nor 1.
    #[error("invalid GGUF file: {what} at offset {offset} is a bool with byte value {byte} (expected 0 or 1)")]
    InvalidBool { what: String, byte: u8, offset: u64 },

    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`](crate::MAX_ARRAY_DEPTH).
    #[error("invalid GGUF file: {what} at offset {offset} nests arrays deeper than {max} levels")]
    NestingTooDeep {
        what: String,
        offset: u64,
        max: usize,
    },

    /// The same metadata key appears twice.
    #[error("invalid GGUF file: duplicate metadata key '{key}' at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },

    /// `general.alignment` is not a usable alignment.
    #[error("invalid GGUF alignment: general.alignment {detail} (must be a power of two that fits in a u32)")]
    BadAlignment { detail: String },

    /// A tensor has a type id this crate does not know.
    #[error("invalid GGUF file: tensor '{tensor}' (info at offset {offset}) has unknown ggml type {type_id}")]
    UnknownTensorType {
        tensor: String,
        type_id: u32,
        offset: u64,
    },

    /// A tensor's shape is unusable (dimension count, zero or overflowing
    /// dimensions, row not a multiple of the block size).
    #[error("invalid GGUF file: tensor '{tensor}' (info at offset {offset}): {reason}")]
    InvalidTensor {
        tensor: String,
        offset: u64,
        reason: String,
    },

    /// Two tensors have the same name.
    #[error("invalid GGUF file: duplicate tensor name '{tensor}' (info at offset {offset})")]
    DuplicateTensor { tensor: String, offset: u64 },

    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("invalid GGUF file: tensor '{tensor}' has data offset {data_offset} (relative to the data section), not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        tensor: String,
        data_offset: u64,
        alignment: u64,
    },

    /// A tensor's data lies (partly) outside the file.
    #[error("invalid GGUF file: tensor '{tensor}' data [{data_offset}, {data_offset}+{n_bytes}) (relative to the data section at file offset {data_section}) exceeds the {data_len} bytes of data in the file")]
    TensorOutOfBounds {
        tensor: String,
        data_offset: u64,
        n_bytes: u64,
        data_section: u64,
        data_len: u64,
    },

    /// Two tensors' data ranges overlap.
    #[error("invalid GGUF file: data of tensor '{first}' [{first_start}, {first_end}) overlaps data of tensor '{second}' starting at {second_start} (offsets relative to the data section)")]
    OverlappingTensors {
        first: String,
        first_start: u64,
        first_end: u64,
        second: String,
        second_start: u64,
    },

    /// The writer was given something it cannot write.
    #[error("GGUF writer: {0}")]
    InvalidInput(String),
}
