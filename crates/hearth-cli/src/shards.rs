//! Joining the shards of a split GGUF (llama.cpp's `gguf-split` layout) into one file,
//! for `hearth pull`: the loader reads single files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hearth_gguf::{Array, GgufFile, GgufWriter, Value};

/// Bytes `value` takes in a GGUF file after its type id.
fn value_len(v: &Value) -> u64 {
    match v {
        Value::String(s) => 8 + s.len() as u64,
        Value::Array(a) => array_len(a),
        other => other.value_type().fixed_size().unwrap_or(0) as u64,
    }
}

/// Bytes an array takes: element type, count, elements.
fn array_len(a: &Array) -> u64 {
    12 + match a {
        Array::String(v) => v.iter().map(|s| 8 + s.len() as u64).sum(),
        Array::Array(v) => v.iter().map(array_len).sum(),
        other => other.len() as u64 * other.element_type().fixed_size().unwrap_or(0) as u64,
    }
}

/// Joins the shards of a split GGUF into one file at `out`. Each shard is a complete GGUF
/// (llama.cpp's `gguf-split` layout) carrying `split.no` (0-based), `split.count` and, in
/// the first, `split.tensors.count`; the first holds the model's metadata. The joined file
/// has the first shard's metadata without the `split.*` keys, written by [`GgufWriter`],
/// then every shard's tensor infos and data in order, re-offset and aligned as the writer
/// aligns them, streamed from the shards' maps. It is read back and checked at the end.
pub fn join_shards(shards: &[PathBuf], out: &Path) -> Result<()> {
    let n = shards.len();
    let files: Vec<GgufFile> = shards
        .iter()
        .map(|p| GgufFile::open(p).with_context(|| format!("cannot read shard {}", p.display())))
        .collect::<Result<_>>()?;
    let get = |f: &GgufFile, key: &str| f.get(key).and_then(Value::as_u64);
    for (i, (f, p)) in files.iter().zip(shards).enumerate() {
        let shown = p.display();
        match (get(f, "split.no"), get(f, "split.count")) {
            (Some(no), Some(count)) if no == i as u64 && count == n as u64 => {}
            (Some(no), Some(count)) => {
                bail!(
                    "{shown} is shard {} of {count}, expected shard {} of {n}",
                    no + 1,
                    i + 1
                )
            }
            _ => bail!("{shown} is not a shard of a split GGUF (no split.no / split.count)"),
        }
    }
    let first = &files[0];
    let n_tensors: usize = files.iter().map(|f| f.tensors().len()).sum();
    if let Some(stated) = get(first, "split.tensors.count") {
        if stated != n_tensors as u64 {
            bail!("the shards hold {n_tensors} tensors, the first says {stated}");
        }
    }

    let mut w = GgufWriter::new();
    w.set_version(first.version())?;
    for (k, v) in first.metadata() {
        if !k.starts_with("split.") {
            w.add_kv(k.clone(), v.clone());
        }
    }
    w.set_alignment(first.alignment())?;
    let align = w.alignment();
    let head = w.to_bytes()?;
    // The writer's file with no tensors is the header and metadata, then zeros up to the
    // alignment. Cut it where the metadata ends, and state the tensor count.
    let kv_end = 24
        + w.metadata()
            .iter()
            .map(|(k, v)| 8 + k.len() as u64 + 4 + value_len(v))
            .sum::<u64>();
    let kv_end = usize::try_from(kv_end)?;
    if kv_end > head.len() || head[kv_end..].iter().any(|&b| b != 0) {
        bail!("internal error: the metadata's encoded length is not {kv_end} bytes");
    }
    let mut index = head[..kv_end].to_vec();
    index[8..16].copy_from_slice(&(n_tensors as u64).to_le_bytes());

    let pad = |pos: u64| (align - pos % align) % align;
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0u64;
    for t in files.iter().flat_map(|f| f.tensors()) {
        if !seen.insert(t.name.as_str()) {
            bail!("tensor '{}' is in two shards", t.name);
        }
        index.extend_from_slice(&(t.name.len() as u64).to_le_bytes());
        index.extend_from_slice(t.name.as_bytes());
        index.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in &t.shape {
            index.extend_from_slice(&d.to_le_bytes());
        }
        index.extend_from_slice(&t.ggml_type.as_u32().to_le_bytes());
        index.extend_from_slice(&offset.to_le_bytes());
        offset = offset
            .checked_add(t.n_bytes + pad(t.n_bytes))
            .ok_or_else(|| anyhow!("the tensors' total size overflows"))?;
    }
    index.resize(index.len() + pad(index.len() as u64) as usize, 0);

    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut o = BufWriter::with_capacity(1 << 20, file);
    let write_err = || format!("cannot write {}", out.display());
    o.write_all(&index).with_context(write_err)?;
    let zeros = vec![0u8; align as usize];
    for f in &files {
        for t in f.tensors() {
            o.write_all(f.tensor_data(t)).with_context(write_err)?;
            o.write_all(&zeros[..pad(t.n_bytes) as usize])
                .with_context(write_err)?;
        }
    }
    let file = o
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(write_err)?;
    file.sync_all().with_context(write_err)?;
    let files_tensors: Vec<(String, Vec<u64>, hearth_gguf::GgmlType)> = files
        .iter()
        .flat_map(|f| f.tensors())
        .map(|t| (t.name.clone(), t.shape.clone(), t.ggml_type))
        .collect();
    drop(files);

    let joined = GgufFile::open(out).context("the joined file does not read back")?;
    let keys = |m: &[(String, Value)]| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let same_tensors = joined
        .tensors()
        .iter()
        .zip(files_tensors.iter())
        .all(|(a, b)| a.name == b.0 && a.shape == b.1 && a.ggml_type == b.2);
    if keys(joined.metadata()) != keys(w.metadata())
        || joined.tensors().len() != n_tensors
        || !same_tensors
    {
        bail!("the joined file does not read back as written");
    }
    Ok(())
}
