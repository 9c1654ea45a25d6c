//! Parsing and validating GGUF files.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::Path;

use crate::error::GgufError;
use crate::types::GgmlType;
use crate::value::{Array, Value, ValueType};
use crate::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};

/// Smallest possible encoding of a metadata key/value pair: an empty key
/// (8-byte length), a 4-byte type and a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible encoding of a tensor info: an empty name, `n_dims`,
/// one dimension, the type and the offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;
/// Smallest encoding of a string (its length) and of an array (type + count).
const MIN_STRING_BYTES: u64 = 8;
const MIN_ARRAY_BYTES: u64 = 4 + 8;

/// One entry of the tensor index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `shape[0]` (ne0) is the innermost,
    /// contiguous dimension. 1 to 4 entries, none zero.
    pub shape: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the tensor's data, relative to the start of the data section.
    pub offset: u64,
    /// Size of the tensor's data: `row_size(ne0)` times the other dimensions.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dimensions).
    pub fn n_elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// `shape[0]`, the number of elements in a row (1 for a 0-d tensor).
    pub fn ne0(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of all dimensions but the first.
    pub fn n_rows(&self) -> u64 {
        self.shape
            .iter()
            .skip(1)
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Bytes per row, if `ne0` is a multiple of the type's block size.
    pub fn row_size(&self) -> Option<u64> {
        self.ggml_type.row_size(self.ne0())
    }
}

/// Where the file's bytes live.
enum Storage {
    Mmap(memmap2::Mmap),
    /// In-memory bytes; `buf[start..start + len]` is the file, with `start`
    /// chosen so that the file's first byte is 64-byte aligned in memory.
    Heap {
        buf: Vec<u8>,
        start: usize,
        len: usize,
    },
}

impl Storage {
    /// Wraps an owned buffer, copying it only if it is not 64-byte aligned.
    fn from_vec(bytes: Vec<u8>) -> Storage {
        const ALIGN: usize = 64;
        let len = bytes.len();
        if bytes.as_ptr().align_offset(ALIGN) == 0 {
            return Storage::Heap {
                buf: bytes,
                start: 0,
                len,
            };
        }
        let mut buf = vec![0u8; len + ALIGN - 1];
        let mut start = buf.as_ptr().align_offset(ALIGN);
        if start >= ALIGN {
            start = 0; // alignment not computable: give up on it, stay correct
        }
        buf[start..start + len].copy_from_slice(&bytes);
        drop(bytes);
        Storage::Heap { buf, start, len }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Heap { buf, start, len } => &buf[*start..*start + *len],
        }
    }
}

/// A parsed and validated GGUF file.
///
/// Construction checks everything (see the crate docs); afterwards all
/// accessors are infallible. Tensor data is borrowed straight from the
/// memory map: [`tensor_data`](Self::tensor_data) copies nothing. The
/// address of each tensor's data is aligned to the file's alignment, up to
/// 64 bytes (more for memory-mapped files: the map is page aligned).
pub struct GgufFile {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("file_len", &self.bytes().len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps the file at `path` and parses it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io_err = |action: &'static str| {
            move |source| GgufError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let file = File::open(path).map_err(io_err("failed to open"))?;
        let len = file.metadata().map_err(io_err("failed to stat"))?.len();
        let storage = if len == 0 {
            // Mapping an empty file fails on some platforms; nothing to map.
            Storage::from_vec(Vec::new())
        } else {
            // SAFETY: `Mmap::map` is unsafe because the mapping aliases the file:
            // if another process truncates or rewrites the file while it is
            // mapped, reads may see changed bytes or fault (SIGBUS). We map
            // read-only, never hand out mutable access, and parse/validate the
            // bytes as they are; model files are not modified while in use, and
            // this is the documented contract of `GgufFile::open`. No Rust
            // invariant depends on the contents staying the same.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err("failed to mmap"))?;
            Storage::Mmap(map)
        };
        Self::from_storage(storage)
    }

    /// Parses a GGUF file held in memory (same parser as [`open`](Self::open)).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_storage(Storage::from_vec(bytes))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile, GgufError> {
        let parsed = parse(storage.bytes())?;
        Ok(GgufFile {
            storage,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            key_index: parsed.key_index,
            tensors: parsed.tensors,
            tensor_index: parsed.tensor_index,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the data section and tensor offsets
    /// (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section (tensor offsets are relative to it).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata key/value pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// An integer value of any integer type, if it fits in a `u32`.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u32()
    }

    /// An integer value of any integer type, if it fits in a `u64`.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// An integer value of any integer type, if it fits in an `i32`.
    pub fn get_i32(&self, key: &str) -> Option<i32> {
        self.get(key)?.as_i32()
    }

    /// An integer value of any integer type, if it fits in an `i64`.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }

    /// An `F32` value, or an `F64` value narrowed to `f32`.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    /// A `Bool` value.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Option<&Array> {
        self.get(key)?.as_array()
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        self.get_array(key)?.as_strings()
    }

    /// An array of `f32` (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Option<&[f32]> {
        self.get_array(key)?.as_f32s()
    }

    /// An array of `i32` (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array(&self, key: &str) -> Option<&[i32]> {
        self.get_array(key)?.as_i32s()
    }

    /// An array of `u32`.
    pub fn get_u32_array(&self, key: &str) -> Option<&[u32]> {
        self.get_array(key)?.as_u32s()
    }

    /// The tensor index, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor of this file (bounds were checked at parse
    /// time). Given a `TensorInfo` that does not describe a range inside this
    /// file (one built by hand or taken from another file), returns an empty
    /// slice rather than panicking.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|start| Some((start, start.checked_add(t.n_bytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range.and_then(|r| self.bytes().get(r)).unwrap_or(&[])
    }

    /// The raw bytes of the tensor named `name`.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_data(t))
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Tells the OS that bytes `offset..offset + len` of a memory-mapped file are not
    /// needed for now (the whole pages inside that range): they leave the process's
    /// resident set, and a later read takes them back from the page cache or the file,
    /// unchanged. For data that a copy has replaced (an interleaved layout). A no-op for a
    /// file read into memory, or where the OS does not support it.
    pub fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        if let Storage::Mmap(m) = &self.storage {
            const PAGE: usize = 4096;
            let end = offset.saturating_add(len).min(m.len()) / PAGE * PAGE;
            let start = offset.div_ceil(PAGE) * PAGE;
            if start < end {
                // SAFETY: the map is read-only and backed by the file, so after
                // MADV_DONTNEED its pages read back the file's bytes: every `&[u8]` into
                // it keeps seeing the same contents (the range lies inside the map).
                // A failure only leaves the pages resident.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
    }
}

/// The result of parsing, before it is attached to its storage.
struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Capacity to reserve for `count` items of type `T`: no more than the
/// remaining bytes could hold, so a lying count cannot cause a huge
/// allocation (the vector still grows if the items really are there).
fn bounded_capacity<T>(count: u64, remaining: usize) -> usize {
    let by_bytes = remaining / std::mem::size_of::<T>().max(1);
    usize::try_from(count).map_or(by_bytes, |c| c.min(by_bytes))
}

fn le_vec<T, const N: usize>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn file_len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Takes `n` bytes, or fails naming `what()`.
    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(GgufError::Truncated {
                what: what(),
                needed: n,
                offset: self.offset(),
                file_len: self.file_len(),
            }),
        }
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a count and checks that `count` items of at least `min_each`
    /// bytes could fit in the rest of the file.
    fn count(&mut self, min_each: u64, what: impl Fn() -> String) -> Result<u64, GgufError> {
        let at = self.offset();
        let count = self.u64(&what)?;
        let remaining = self.remaining() as u64;
        if count > remaining / min_each {
            return Err(GgufError::CountTooLarge {
                what: what(),
                count,
                offset: at,
                min_each,
                remaining,
            });
        }
        Ok(count)
    }

    /// Reads a length-prefixed UTF-8 string.
    fn string(&mut self, what: impl Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("length of {}", what()))?;
        let at = self.offset();
        let bytes = self.take(len, &what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 {
                what: what(),
                offset: at,
            }),
        }
    }

    fn bool(&mut self, what: impl Fn() -> String) -> Result<bool, GgufError> {
        let at = self.offset();
        match self.u8(&what)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::InvalidBool {
                what: what(),
                byte,
                offset: at,
            }),
        }
    }

    fn value_type(&mut self, what: impl Fn() -> String) -> Result<ValueType, GgufError> {
        let at = self.offset();
        let id = self.u32(|| format!("type of {}", what()))?;
        ValueType::from_u32(id).ok_or_else(|| GgufError::UnknownValueType {
            what: what(),
            type_id: id,
            offset: at,
        })
    }

    /// Reads a value of type `ty`; `what` describes it for error messages.
    fn value(&mut self, ty: ValueType, what: &dyn Fn() -> String) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(what)?),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => Value::Bool(self.bool(what)?),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => Value::Array(self.array_value(1, what)?),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
        })
    }

    /// Reads an array (element type, count, elements) at nesting `level`
    /// (1 for an array that is itself a metadata value).
    fn array_value(&mut self, level: usize, what: &dyn Fn() -> String) -> Result<Array, GgufError> {
        if level > MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep {
                what: what(),
                offset: self.offset(),
                max: MAX_ARRAY_DEPTH,
            });
        }
        let elem = self.value_type(|| format!("array elements of {}", what()))?;
        let min_each = match elem {
            ValueType::String => MIN_STRING_BYTES,
            ValueType::Array => MIN_ARRAY_BYTES,
            fixed => fixed.fixed_size().map_or(1, |s| s as u64),
        };
        let count = self.count(min_each, || format!("element count of {}", what()))?;
        let elems_at = self.offset();
        // `count * min_each` cannot overflow: `count()` checked it against
        // the remaining bytes.
        let mut fixed = |size: u64| self.take(count * size, || format!("elements of {}", what()));
        Ok(match elem {
            ValueType::U8 => Array::U8(fixed(1)?.to_vec()),
            ValueType::I8 => Array::I8(le_vec(fixed(1)?, i8::from_le_bytes)),
            ValueType::U16 => Array::U16(le_vec(fixed(2)?, u16::from_le_bytes)),
            ValueType::I16 => Array::I16(le_vec(fixed(2)?, i16::from_le_bytes)),
            ValueType::U32 => Array::U32(le_vec(fixed(4)?, u32::from_le_bytes)),
            ValueType::I32 => Array::I32(le_vec(fixed(4)?, i32::from_le_bytes)),
            ValueType::F32 => Array::F32(le_vec(fixed(4)?, f32::from_le_bytes)),
            ValueType::U64 => Array::U64(le_vec(fixed(8)?, u64::from_le_bytes)),
            ValueType::I64 => Array::I64(le_vec(fixed(8)?, i64::from_le_bytes)),
            ValueType::F64 => Array::F64(le_vec(fixed(8)?, f64::from_le_bytes)),
            ValueType::Bool => {
                let bytes = fixed(1)?;
                let mut v = Vec::with_capacity(bytes.len());
                for (i, &b) in bytes.iter().enumerate() {
                    match b {
                        0 => v.push(false),
                        1 => v.push(true),
                        byte => {
                            return Err(GgufError::InvalidBool {
                                what: format!("element {i} of {}", what()),
                                byte,
                                offset: elems_at + i as u64,
                            })
                        }
                    }
                }
                Array::Bool(v)
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(bounded_capacity::<String>(count, self.remaining()));
                for i in 0..count {
                    v.push(self.string(|| format!("string {i} of {}", what()))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(bounded_capacity::<Array>(count, self.remaining()));
                for i in 0..count {
                    let inner = || format!("array {i} of {}", what());
                    v.push(self.array_value(level + 1, &inner)?);
                }
                Array::Array(v)
            }
        })
    }
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    // `align` is a power of two.
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Reads `general.alignment` if present and checks it.
fn alignment_from(
    metadata: &[(String, Value)],
    key_index: &HashMap<String, usize>,
) -> Result<u64, GgufError> {
    let Some(&i) = key_index.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let value = &metadata[i].1;
    let Some(a) = value.as_u64() else {
        let detail = match value {
            Value::I8(_) | Value::I16(_) | Value::I32(_) | Value::I64(_) => {
                format!("is negative ({value:?})")
            }
            _ => format!("has type {}, expected u32", value.value_type()),
        };
        return Err(GgufError::BadAlignment { detail });
    };
    if a == 0 || !a.is_power_of_two() || a > u64::from(u32::MAX) {
        return Err(GgufError::BadAlignment {
            detail: format!("is {a}"),
        });
    }
    Ok(a)
}

/// Parses and validates a complete GGUF file.
fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor { buf, pos: 0 };

    // --- header ---
    let magic: [u8; 4] = c.array(|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(|| "version".into())?;
    if !crate::SUPPORTED_VERSIONS.contains(&version) {
        let hint = if version == 1 {
            " (GGUF v1 used 32-bit counts and is obsolete)"
        } else if crate::SUPPORTED_VERSIONS.contains(&version.swap_bytes()) {
            " (this looks like a big-endian file; only little-endian files are supported)"
        } else {
            ""
        };
        return Err(GgufError::UnsupportedVersion { version, hint });
    }
    let tensor_count = c.count(MIN_TENSOR_INFO_BYTES, || "tensor count".into())?;
    let kv_count = c.count(MIN_KV_BYTES, || "metadata key/value count".into())?;

    // --- metadata ---
    let mut metadata: Vec<(String, Value)> =
        Vec::with_capacity(bounded_capacity::<(String, Value)>(kv_count, c.remaining()));
    let mut key_index: HashMap<String, usize> = HashMap::new();
    for i in 0..kv_count {
        let key_at = c.offset();
        let key = c.string(|| format!("metadata key #{i}"))?;
        let what = || format!("metadata value of key '{key}'");
        let ty = c.value_type(what)?;
        let value = c.value(ty, &what)?;
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_at,
            });
        }
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    let alignment = alignment_from(&metadata, &key_index)?;

    // --- tensor index ---
    let remaining = c.remaining() as u64;
    if tensor_count > remaining / MIN_TENSOR_INFO_BYTES {
        return Err(GgufError::CountTooLarge {
            what: "tensor count".into(),
            count: tensor_count,
            offset: 8,
            min_each: MIN_TENSOR_INFO_BYTES,
            remaining,
        });
    }
    let mut tensors: Vec<TensorInfo> =
        Vec::with_capacity(bounded_capacity::<TensorInfo>(tensor_count, c.remaining()));
    let mut tensor_index: HashMap<String, usize> = HashMap::new();
    for i in 0..tensor_count {
        let info_at = c.offset();
        let name = c.string(|| format!("name of tensor #{i}"))?;
        let invalid = |reason: String| GgufError::InvalidTensor {
            tensor: name.clone(),
            offset: info_at,
            reason,
        };
        let n_dims = c.u32(|| format!("dimension count of tensor '{name}'"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(invalid(format!(
                "has {n_dims} dimensions (must be 1 to {MAX_DIMS})"
            )));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            shape.push(c.u64(|| format!("dimension {d} of tensor '{name}'"))?);
        }
        let type_at = c.offset();
        let type_id = c.u32(|| format!("type of tensor '{name}'"))?;
        let data_off = c.u64(|| format!("data offset of tensor '{name}'"))?;
        let Some(ggml_type) = GgmlType::from_u32(type_id) else {
            return Err(GgufError::UnknownTensorType {
                tensor: name,
                type_id,
                offset: type_at,
            });
        };
        let n_bytes = tensor_n_bytes(&shape, ggml_type).map_err(invalid)?;
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor {
                tensor: name,
                offset: info_at,
            });
        }
        tensor_index.insert(name.clone(), tensors.len());
        tensors.push(TensorInfo {
            name,
            shape,
            ggml_type,
            offset: data_off,
            n_bytes,
        });
    }

    // --- data section ---
    let header_end = c.offset();
    let data_offset = align_up(header_end, alignment).ok_or_else(|| GgufError::BadAlignment {
        detail: format!("{alignment} overflows the data section offset"),
    })?;
    let data_len = c.file_len().saturating_sub(data_offset);
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                data_offset: t.offset,
                alignment,
            });
        }
        let fits = t
            .offset
            .checked_add(t.n_bytes)
            .is_some_and(|end| end <= data_len);
        if !fits {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                data_offset: t.offset,
                n_bytes: t.n_bytes,
                data_section: data_offset,
                data_len,
            });
        }
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_unstable_by_key(|&i| (tensors[i].offset, tensors[i].n_bytes));
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        // Both ranges are inside the file, so `offset + n_bytes` cannot overflow.
        let a_end = a.offset + a.n_bytes;
        if a_end > b.offset {
            return Err(GgufError::OverlappingTensors {
                first: a.name.clone(),
                first_start: a.offset,
                first_end: a_end,
                second: b.name.clone(),
                second_start: b.offset,
            });
        }
    }

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

/// Checks a shape (1..=4 non-zero dimensions, element count within `i64`,
/// rows a whole number of blocks) and returns the tensor's size in bytes.
pub(crate) fn tensor_n_bytes(shape: &[u64], ty: GgmlType) -> Result<u64, String> {
    if shape.is_empty() || shape.len() > MAX_DIMS {
        return Err(format!(
            "has {} dimensions (must be 1 to {MAX_DIMS})",
            shape.len()
        ));
    }
    let mut n_elements: u64 = 1;
    for (d, &ne) in shape.iter().enumerate() {
        if ne == 0 {
            return Err(format!("dimension {d} is 0 (shape {shape:?})"));
        }
        n_elements = n_elements
            .checked_mul(ne)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| format!("element count of shape {shape:?} overflows"))?;
    }
    let ne0 = shape[0];
    if !ne0.is_multiple_of(ty.block_size() as u64) {
        return Err(format!(
            "row of {ne0} elements is not a multiple of the {ty} block size {}",
            ty.block_size()
        ));
    }
    let row = ty
        .row_size(ne0)
        .ok_or_else(|| format!("byte size of a row of {ne0} {ty} elements overflows"))?;
    // n_elements fits in i64, so the number of rows does too; the byte size
    // can still overflow for types with more than 1 byte per element.
    let rows = n_elements / ne0;
    row.checked_mul(rows)
        .ok_or_else(|| format!("byte size of shape {shape:?} of type {ty} overflows"))
}
