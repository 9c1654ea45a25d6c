//! A Hugging Face model folder: `config.json`, the weights in `model*.safetensors`
//! (memory-mapped, validated by the `safetensors` crate before any tensor is read) and the
//! JSON side files.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::{Map, Value};

use crate::ConvertError;

/// One `*.safetensors` file, mapped.
struct Part {
    path: PathBuf,
    map: Mmap,
    /// Where the data section starts in the file (8 + header length).
    data_start: usize,
    /// The file's tensors, in the order of their data.
    tensors: Vec<(String, TensorInfo)>,
}

/// A model folder opened for conversion.
pub struct HfFolder {
    pub dir: PathBuf,
    /// `config.json`, a JSON object.
    pub config: Map<String, Value>,
    parts: Vec<Part>,
}

/// A tensor of the folder: where it is and what it holds.
pub struct TensorRef<'f> {
    pub name: &'f str,
    pub dtype: Dtype,
    /// In the file's order: the last dimension is contiguous (`[n_rows, ne0]` for a matrix).
    pub shape: &'f [usize],
    bytes: &'f [u8],
}

impl TensorRef<'_> {
    /// The values as f32, converted from F32, F16 or BF16 (exactly).
    pub fn to_f32(&self) -> Result<Vec<f32>, ConvertError> {
        let b = self.bytes;
        let out = match self.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            other => {
                return Err(ConvertError::tensor(
                    self.name,
                    format!("has dtype {other:?}; expected F32, F16 or BF16"),
                ))
            }
        };
        Ok(out)
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Result<Value, ConvertError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConvertError::Missing(path.to_path_buf())
        } else {
            ConvertError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|source| ConvertError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSON file that may be absent.
pub fn read_json_opt(path: &Path) -> Result<Option<Value>, ConvertError> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn safetensors_error(path: &Path, e: SafeTensorError) -> ConvertError {
    let detail = match e {
        SafeTensorError::MetadataIncompleteBuffer => {
            "its size does not match its header (truncated, or trailing bytes)".to_owned()
        }
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            "its header is truncated".to_owned()
        }
        other => other.to_string(),
    };
    ConvertError::Safetensors {
        path: path.to_path_buf(),
        detail,
    }
}

impl Part {
    fn open(path: PathBuf) -> Result<Part, ConvertError> {
        let io = |source| ConvertError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        if file.metadata().map_err(io)?.len() < 8 {
            return Err(safetensors_error(&path, SafeTensorError::HeaderTooSmall));
        }
        // SAFETY: `Mmap::map` is unsafe because the map aliases the file: if another
        // process truncates or rewrites it while mapped, reads may see other bytes or
        // fault (SIGBUS). The map is read-only, its bytes are validated as they are, and
        // no Rust invariant depends on them staying the same; model files are not
        // modified while being converted.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (n_header, metadata): (usize, Metadata) =
            SafeTensors::read_metadata(&map).map_err(|e| safetensors_error(&path, e))?;
        let infos = metadata.tensors();
        let tensors = metadata
            .offset_keys()
            .into_iter()
            .map(|name| {
                let info = (*infos[&name]).clone();
                (name, info)
            })
            .collect();
        Ok(Part {
            path,
            map,
            data_start: 8 + n_header,
            tensors,
        })
    }
}

impl HfFolder {
    /// Reads `dir/config.json`, a JSON object.
    pub fn read_config(dir: &Path) -> Result<Map<String, Value>, ConvertError> {
        if !dir.is_dir() {
            return Err(if dir.exists() {
                ConvertError::NotADirectory(dir.to_path_buf())
            } else {
                ConvertError::Missing(dir.to_path_buf())
            });
        }
        match read_json(&dir.join("config.json"))? {
            Value::Object(m) => Ok(m),
            _ => Err(ConvertError::Config("not a JSON object".into())),
        }
    }

    /// Opens `dir` with its `config` ([`read_config`](Self::read_config)): maps and
    /// validates every `model*.safetensors` (sorted by name, as the shards of a split
    /// model are numbered).
    pub fn open(dir: &Path, config: Map<String, Value>) -> Result<HfFolder, ConvertError> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|source| ConvertError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("model") && n.ends_with(".safetensors"))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(ConvertError::NoSafetensors(dir.to_path_buf()));
        }
        let parts = names
            .into_iter()
            .map(|n| Part::open(dir.join(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for p in &parts {
            for (name, _) in &p.tensors {
                if !seen.insert(name.as_str()) {
                    return Err(ConvertError::tensor(
                        name,
                        format!("appears twice (again in {})", p.path.display()),
                    ));
                }
            }
        }
        Ok(HfFolder {
            dir: dir.to_path_buf(),
            config,
            parts,
        })
    }

    /// `architectures[0]` of a `config.json`.
    pub fn architecture(config: &Map<String, Value>) -> Result<String, ConvertError> {
        match config.get("architectures") {
            Some(Value::Array(a)) => match a.first() {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(ConvertError::Config(
                    "'architectures' must be a non-empty list of names".into(),
                )),
            },
            Some(_) => Err(ConvertError::Config(
                "'architectures' must be a list of names".into(),
            )),
            None => Err(ConvertError::Config("has no 'architectures'".into())),
        }
    }

    /// A whole number from `config.json` (`key`), required.
    pub fn config_usize(&self, key: &str) -> Result<usize, ConvertError> {
        self.config_usize_or(key, None)
    }

    /// A whole number from `config.json`, or `default` when the key is absent.
    pub fn config_usize_or(
        &self,
        key: &str,
        default: Option<usize>,
    ) -> Result<usize, ConvertError> {
        match self.config.get(key) {
            None | Some(Value::Null) => {
                default.ok_or_else(|| ConvertError::Config(format!("has no '{key}'")))
            }
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0 && n <= u32::MAX as usize)
                .ok_or_else(|| {
                    ConvertError::Config(format!(
                        "'{key}' must be a positive whole number below 2^32, got {v}"
                    ))
                }),
        }
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.parts.iter().flat_map(|p| {
            p.tensors.iter().map(move |(name, info)| {
                let (begin, end) = info.data_offsets;
                // In bounds: `read_metadata` checked that the offsets tile the data
                // section exactly.
                let bytes = &p.map[p.data_start + begin..p.data_start + end];
                TensorRef {
                    name,
                    dtype: info.dtype,
                    shape: &info.shape,
                    bytes,
                }
            })
        })
    }

    /// Every tensor, file by file, each file's sorted by name (llama.cpp's order).
    pub fn tensors_by_name(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.parts.iter().flat_map(|p| {
            let mut order: Vec<usize> = (0..p.tensors.len()).collect();
            order.sort_by(|&a, &b| p.tensors[a].0.cmp(&p.tensors[b].0));
            order.into_iter().map(move |i| {
                let (name, info) = &p.tensors[i];
                let (begin, end) = info.data_offsets;
                // In bounds, as in `tensors`.
                TensorRef {
                    name,
                    dtype: info.dtype,
                    shape: &info.shape,
                    bytes: &p.map[p.data_start + begin..p.data_start + end],
                }
            })
        })
    }
}
