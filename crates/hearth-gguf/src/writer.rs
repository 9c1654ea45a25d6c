//! Writing GGUF files.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::GgufError;
use crate::reader::tensor_n_bytes;
use crate::types::GgmlType;
use crate::value::{Array, Value};
use crate::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH};

struct PendingTensor {
    name: String,
    shape: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory and writes it out.
///
/// Metadata keys are written in the order they were first added; tensors in
/// the order they were added, each at an offset aligned to the file's
/// alignment, with zero padding after the tensor index and after every
/// tensor (as llama.cpp writes them). [`GgufFile`](crate::GgufFile) reads
/// back exactly what was added.
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

/// Counts the bytes written so padding can be computed.
struct Counting<'w, W: Write> {
    inner: &'w mut W,
    written: u64,
}

impl<W: Write> Counting<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.inner.write_all(bytes).map_err(GgufError::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, alignment: u64) -> Result<(), GgufError> {
        const ZEROS: [u8; 64] = [0; 64];
        let mut pad = padding(self.written, alignment);
        while pad > 0 {
            let n = pad.min(ZEROS.len() as u64);
            self.put(&ZEROS[..n as usize])?;
            pad -= n;
        }
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), GgufError> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    fn value(&mut self, v: &Value) -> Result<(), GgufError> {
        match v {
            Value::U8(x) => self.put(&x.to_le_bytes()),
            Value::I8(x) => self.put(&x.to_le_bytes()),
            Value::U16(x) => self.put(&x.to_le_bytes()),
            Value::I16(x) => self.put(&x.to_le_bytes()),
            Value::U32(x) => self.put(&x.to_le_bytes()),
            Value::I32(x) => self.put(&x.to_le_bytes()),
            Value::F32(x) => self.put(&x.to_le_bytes()),
            Value::Bool(x) => self.put(&[u8::from(*x)]),
            Value::String(s) => self.string(s),
            Value::Array(a) => self.array(a),
            Value::U64(x) => self.put(&x.to_le_bytes()),
            Value::I64(x) => self.put(&x.to_le_bytes()),
            Value::F64(x) => self.put(&x.to_le_bytes()),
        }
    }

    fn array(&mut self, a: &Array) -> Result<(), GgufError> {
        self.put(&a.element_type().as_u32().to_le_bytes())?;
        self.put(&(a.len() as u64).to_le_bytes())?;
        // Encode scalars in chunks to keep the number of write calls low.
        fn each<W: Write, T: Copy, const N: usize>(
            out: &mut Counting<'_, W>,
            items: &[T],
            f: fn(T) -> [u8; N],
        ) -> Result<(), GgufError> {
            let mut buf = Vec::with_capacity(N * items.len().min(4096));
            for chunk in items.chunks(4096) {
                buf.clear();
                for &x in chunk {
                    buf.extend_from_slice(&f(x));
                }
                out.put(&buf)?;
            }
            Ok(())
        }
        match a {
            Array::U8(v) => self.put(v),
            Array::I8(v) => each(self, v, i8::to_le_bytes),
            Array::U16(v) => each(self, v, u16::to_le_bytes),
            Array::I16(v) => each(self, v, i16::to_le_bytes),
            Array::U32(v) => each(self, v, u32::to_le_bytes),
            Array::I32(v) => each(self, v, i32::to_le_bytes),
            Array::F32(v) => each(self, v, f32::to_le_bytes),
            Array::Bool(v) => each(self, v, |b| [u8::from(b)]),
            Array::U64(v) => each(self, v, u64::to_le_bytes),
            Array::I64(v) => each(self, v, i64::to_le_bytes),
            Array::F64(v) => each(self, v, f64::to_le_bytes),
            Array::String(v) => v.iter().try_for_each(|s| self.string(s)),
            Array::Array(v) => v.iter().try_for_each(|inner| self.array(inner)),
        }
    }
}

fn padding(pos: u64, alignment: u64) -> u64 {
    (alignment - pos % alignment) % alignment
}

fn check_alignment(alignment: u64) -> Result<(), GgufError> {
    if alignment == 0 || !alignment.is_power_of_two() || alignment > u64::from(u32::MAX) {
        return Err(GgufError::BadAlignment {
            detail: format!("is {alignment}"),
        });
    }
    Ok(())
}

impl GgufWriter {
    /// An empty GGUF version 3 file with the default alignment (32).
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Chooses the GGUF version to write (2 or 3; the little-endian
    /// encodings are identical).
    pub fn set_version(&mut self, version: u32) -> Result<(), GgufError> {
        if !crate::SUPPORTED_VERSIONS.contains(&version) {
            return Err(GgufError::InvalidInput(format!(
                "cannot write GGUF version {version} (supported: 2, 3)"
            )));
        }
        self.version = version;
        Ok(())
    }

    /// The version that will be written.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Sets the alignment of the data section and tensor offsets (a power of
    /// two that fits in a `u32`). Unless it is the default 32, this also sets
    /// the `general.alignment` key (as a `u32`).
    pub fn set_alignment(&mut self, alignment: u64) -> Result<(), GgufError> {
        check_alignment(alignment)?;
        self.alignment = alignment;
        let has_key = self.metadata.iter().any(|(k, _)| k == ALIGNMENT_KEY);
        if alignment != DEFAULT_ALIGNMENT || has_key {
            self.upsert(ALIGNMENT_KEY.to_owned(), Value::U32(alignment as u32));
        }
        Ok(())
    }

    /// The alignment that will be used.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Adds a metadata key, or replaces the value of an existing key (which
    /// keeps its position). Setting `general.alignment` to a valid alignment
    /// also changes the writer's alignment, like [`set_alignment`](Self::set_alignment);
    /// an invalid one makes [`write_to`](Self::write_to) fail.
    pub fn add_kv(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if key == ALIGNMENT_KEY {
            if let Some(a) = value.as_u64() {
                if check_alignment(a).is_ok() {
                    self.alignment = a;
                }
            }
        }
        self.upsert(key, value);
    }

    fn upsert(&mut self, key: String, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
    }

    /// The metadata added so far, in order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Adds a tensor. `shape` is in ggml order (`shape[0]` = ne0, the
    /// contiguous dimension), 1 to 4 non-zero dimensions; `data` must be
    /// exactly `row_size(ne0) * product(other dims)` bytes. Fails on a bad
    /// shape, a wrong data length or a duplicate name.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: impl AsRef<[u64]>,
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let shape = shape.as_ref().to_vec();
        let n_bytes = tensor_n_bytes(&shape, ggml_type)
            .map_err(|reason| GgufError::InvalidInput(format!("tensor '{name}' {reason}")))?;
        if data.len() as u64 != n_bytes {
            return Err(GgufError::InvalidInput(format!(
                "tensor '{name}' of type {ggml_type} and shape {shape:?} needs {n_bytes} bytes of data, got {}",
                data.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::InvalidInput(format!(
                "duplicate tensor name '{name}'"
            )));
        }
        self.tensors.push(PendingTensor {
            name,
            shape,
            ggml_type,
            data,
        });
        Ok(())
    }

    /// Number of tensors added so far.
    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    /// Checks what `add_kv` could not: the alignment key and array nesting.
    fn validate(&self) -> Result<(), GgufError> {
        for (key, value) in &self.metadata {
            if key == ALIGNMENT_KEY && value.as_u64() != Some(self.alignment) {
                return Err(GgufError::BadAlignment {
                    detail: format!(
                        "is {value:?} but the writer's alignment is {}",
                        self.alignment
                    ),
                });
            }
            if let Value::Array(a) = value {
                if a.depth() > MAX_ARRAY_DEPTH {
                    return Err(GgufError::InvalidInput(format!(
                        "metadata key '{key}' nests arrays {} deep (at most {MAX_ARRAY_DEPTH})",
                        a.depth()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes the file to `out`.
    pub fn write_to<W: Write>(&self, out: &mut W) -> Result<(), GgufError> {
        self.validate()?;
        let align = self.alignment;
        let mut w = Counting {
            inner: out,
            written: 0,
        };

        w.put(&GGUF_MAGIC)?;
        w.put(&self.version.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            w.string(key)?;
            w.put(&value.value_type().as_u32().to_le_bytes())?;
            w.value(value)?;
        }

        let mut offset = 0u64;
        for t in &self.tensors {
            w.string(&t.name)?;
            w.put(&(t.shape.len() as u32).to_le_bytes())?;
            for &d in &t.shape {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ggml_type.as_u32().to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
            let size = t.data.len() as u64;
            offset = offset
                .checked_add(size + padding(size, align))
                .ok_or_else(|| {
                    GgufError::InvalidInput("total tensor data size overflows u64".into())
                })?;
        }
        w.pad_to(align)?;

        for t in &self.tensors {
            w.put(&t.data)?;
            w.pad_to(align)?;
        }
        w.inner.flush().map_err(GgufError::Write)
    }

    /// The file as a byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut v = Vec::new();
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// Writes the file to `path` atomically: into a temporary file in the
    /// same directory, synced, then renamed over `path`.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let tmp = temp_path(path);
        let io_err = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| GgufError::Io {
                action,
                path: p,
                source,
            }
        };
        let result = (|| {
            let file = File::create(&tmp).map_err(io_err("failed to create", &tmp))?;
            let mut buf = BufWriter::new(file);
            self.write_to(&mut buf)?;
            let file = buf
                .into_inner()
                .map_err(|e| io_err("failed to write", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io_err("failed to sync", &tmp))?;
            fs::rename(&tmp, path).map_err(io_err("failed to rename temporary file to", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
