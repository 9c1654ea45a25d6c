//! `hearth pull` from the Hugging Face Hub and from plain URLs.
//!
//! `hf.co/OWNER/REPO[:QUANT]` (or `huggingface.co/…`, with or without `https://`) names a
//! repository of GGUF files, read as Ollama and llama.cpp's `-hf` read it. The repository's
//! files are listed through the Hub's tree API (`GET {endpoint}/api/models/{owner}/{repo}/
//! tree/main?recursive=true`, paged by a `Link: <…>; rel="next"` header), and the GGUF whose
//! name carries the quantization tag is chosen (case-insensitive; without a tag `Q4_K_M`,
//! then `Q4_0`, then the first one listed; vision projectors, `mmproj` files, are never the
//! model). Files come from `{endpoint}/{owner}/{repo}/resolve/main/{path}`, which redirects
//! to a CDN. The sha256 the listing gives for LFS files (`lfs.oid`; the resolve answer
//! repeats it as `X-Linked-Etag`) is checked before the file is renamed into place.
//!
//! A plain `http(s)://…/NAME.gguf` takes the same download path; its sha256 is checked
//! when the server states one (an `ETag` or `X-Linked-Etag` that is 64 hex digits) or the
//! user passes `--sha256`, and otherwise the pull says that it could not verify the file.
//!
//! Every download goes to `{models_dir}/{file}.partial` and resumes from what is there with
//! `Range: bytes=N-` (a server that answers 200 instead of 206 is read from the start); a
//! connection that drops is retried a few times, resuming each time. A model split in
//! shards (`NAME-00001-of-00003.gguf`, llama.cpp's `gguf-split` layout) is downloaded whole
//! and joined into one GGUF, `NAME.gguf` (`shards.rs`), since the loader reads single
//! files; a hidden record beside it (`.NAME.gguf.pull.json`) says which shards it was made
//! of, so that pulling it again downloads nothing.
//!
//! `HF_ENDPOINT` replaces `https://huggingface.co`; `HF_TOKEN` is sent as
//! `Authorization: Bearer` to the endpoint's host only, never to the CDN a download is
//! redirected to. The HTTP client (ureq) takes its proxy from `ALL_PROXY`, `HTTPS_PROXY` or
//! `HTTP_PROXY` and honours `NO_PROXY`. Nothing a server sends is trusted for sizes:
//! listings are read up to 32 MiB, redirects up to 10, and a download never writes more
//! than the size it was announced with.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use hearth_server::{PullEvent, PullSink};

use crate::models::{hex, sha256_file};
use crate::progress::{human, Progress};
use crate::shards::join_shards;

/// The Hub, unless `HF_ENDPOINT` names another (a mirror, a test server).
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The branch files are listed and fetched from.
const REVISION: &str = "main";
/// Redirects followed per request (the Hub needs one or two: a renamed repository, the CDN).
const MAX_REDIRECTS: usize = 10;
/// Pages of a repository listing read at most (the Hub pages by a thousand entries).
const MAX_PAGES: usize = 100;
/// Largest listing page read, in bytes.
const MAX_LISTING_BYTES: u64 = 32 << 20;
/// Tries per request or download; each retry of a download resumes where the last stopped.
const ATTEMPTS: u32 = 4;
/// Most shards a split model may have.
const MAX_SHARDS: usize = 1000;
/// The quantizations taken, in order, when the reference names none.
const PREFERRED_QUANTS: [&str; 2] = ["Q4_K_M", "Q4_0"];

/// What `hearth pull` was given, when it is not a known model's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `hf.co/OWNER/REPO[:QUANT]`.
    Hub {
        owner: String,
        repo: String,
        quant: Option<String>,
    },
    /// An `http://` or `https://` URL of a GGUF file.
    Url(String),
}

impl Source {
    /// Reads `name` as a Hub reference or a URL; `Ok(None)` when it is neither (a known
    /// model's name). A Hub reference that is malformed is an error, not `None`.
    pub fn parse(name: &str) -> Result<Option<Source>> {
        let lower = name.to_ascii_lowercase();
        let (schemed, bare) = match ["https://", "http://"]
            .iter()
            .find(|p| lower.starts_with(**p))
        {
            Some(p) => (true, &name[p.len()..]),
            None => (false, name),
        };
        let hub_rest = ["hf.co/", "huggingface.co/"].iter().find_map(|host| {
            bare.get(..host.len())
                .filter(|h| h.eq_ignore_ascii_case(host))
                .map(|_| &bare[host.len()..])
        });
        if let Some(rest) = hub_rest {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (repo_id, quant) = match rest.split_once(':') {
                Some((id, q)) => (id, Some(q)),
                None => (rest, None),
            };
            let segments: Vec<&str> = repo_id.split('/').collect();
            if let [owner, repo] = segments[..] {
                return Ok(Some(Source::hub(name, owner, repo, quant)?));
            }
            if schemed && segments.len() > 2 {
                // A file's page (`/blob/`) or download (`/resolve/`) address: a plain URL.
                return Ok(Some(Source::Url(name.replacen("/blob/", "/resolve/", 1))));
            }
            bail!("'{name}' is not a Hugging Face reference: expected hf.co/OWNER/REPO or hf.co/OWNER/REPO:QUANT");
        }
        if schemed {
            return Ok(Some(Source::Url(name.to_string())));
        }
        Ok(None)
    }

    fn hub(name: &str, owner: &str, repo: &str, quant: Option<&str>) -> Result<Source> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.len() <= 96
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !id_ok(owner) || !id_ok(repo) {
            bail!("'{name}' is not a Hugging Face reference: the owner and repository names take letters, digits, '-', '_' and '.'");
        }
        let quant = match quant {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("latest") => None,
            Some(q)
                if !q.is_empty()
                    && q.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Some(q.to_string())
            }
            Some(q) => bail!("'{name}': '{q}' is not a quantization tag (such as Q4_K_M or q8_0)"),
        };
        Ok(Source::Hub {
            owner: owner.to_string(),
            repo: repo.to_string(),
            quant,
        })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Hub { owner, repo, quant } => {
                write!(f, "hf.co/{owner}/{repo}")?;
                match quant {
                    Some(q) => write!(f, ":{q}"),
                    None => Ok(()),
                }
            }
            Source::Url(u) => f.write_str(u),
        }
    }
}

/// Pulls `source` into `dir` and returns the path of the GGUF file. `sha256` is the
/// digest a URL's file must have (`--sha256`).
pub fn pull(source: &Source, dir: &Path, sha256: Option<&str>) -> Result<PathBuf> {
    pull_with(source, dir, sha256, None)
}

/// [`pull`], also reporting progress to `sink` (the server's `/api/pull`).
pub fn pull_with(
    source: &Source,
    dir: &Path,
    sha256: Option<&str>,
    sink: Option<PullSink>,
) -> Result<PathBuf> {
    let sha256 = match sha256 {
        Some(s) if is_sha256(&s.to_ascii_lowercase()) => Some(s.to_ascii_lowercase()),
        Some(s) => bail!("--sha256 must be 64 hexadecimal digits, got '{s}'"),
        None => None,
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create models directory {}", dir.display()))?;
    // The token goes to the Hub's host, also when a URL points there.
    let hub = endpoint();
    let mut http = Http::new(hub.as_deref().ok());
    http.sink = sink;
    let plan = match source {
        Source::Hub { owner, repo, quant } => {
            if sha256.is_some() {
                bail!("--sha256 applies to URLs; the Hub states the sha256 of its files itself");
            }
            hub_plan(&http, &hub?, owner, repo, quant.as_deref())?
        }
        Source::Url(url) => url_plan(&http, url, sha256)?,
    };
    fetch_plan(&http, &plan, dir)
}

/// `HF_ENDPOINT` without its trailing `/`, or the Hub.
fn endpoint() -> Result<String> {
    let e = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let e = e.trim_end_matches('/').to_string();
    if Origin::of(&e).is_none() {
        bail!("HF_ENDPOINT must be an http:// or https:// address, got '{e}'");
    }
    Ok(e)
}

// ---------------------------------------------------------------------------------------
// What to download.

/// One file to download.
#[derive(Debug, Clone)]
struct Part {
    url: String,
    /// Its name in the models directory.
    local: String,
    /// Size and sha256 as the source states them, when it does.
    size: Option<u64>,
    sha256: Option<String>,
    /// Who stated the sha256, for messages: the listing, the server, `--sha256`.
    sha256_from: &'static str,
}

/// A model to pull: one file, or the shards of one to join.
#[derive(Debug)]
struct Plan {
    /// What the user asked for, for messages.
    what: String,
    /// The file that ends up in the models directory.
    name: String,
    parts: Vec<Part>,
    split: bool,
}

/// A file of a Hub repository, from the tree listing.
#[derive(Debug, Clone, PartialEq)]
struct RepoFile {
    path: String,
    size: u64,
    /// `lfs.oid`: the sha256 of an LFS file's content.
    sha256: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<TreeLfs>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
    size: u64,
}

/// Lists every file of `owner/repo` at [`REVISION`], following the listing's pages.
fn list_repo(http: &Http, endpoint: &str, owner: &str, repo: &str) -> Result<Vec<RepoFile>> {
    let what = format!("hf.co/{owner}/{repo}");
    let mut url = format!("{endpoint}/api/models/{owner}/{repo}/tree/{REVISION}?recursive=true");
    let mut files = Vec::new();
    for _ in 0..MAX_PAGES {
        let (entries, next) = retrying(&what, || {
            let reply = http.send(Method::Get, &url, None)?;
            let status = reply.status();
            if status != 200 {
                return Err(status_failure(status, &what, &url, http.token.is_some()));
            }
            let next = reply
                .header("link")
                .and_then(next_link)
                .map(|n| join_url(&reply.url, &n));
            let mut response = reply.response;
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_LISTING_BYTES)
                .read_to_vec()
                .map_err(|e| Failure {
                    retry: is_transient(&e),
                    err: anyhow!("cannot read the listing of {what}: {e}"),
                })?;
            let entries: Vec<TreeEntry> = serde_json::from_slice(&body).map_err(|e| Failure {
                retry: false,
                err: anyhow!("the listing of {what} from {url} is not the Hub's JSON ({e})"),
            })?;
            Ok((entries, next))
        })?;
        files.extend(entries.into_iter().filter(|e| e.kind == "file").map(|e| {
            let (size, sha256) = match e.lfs {
                Some(l) => (
                    l.size,
                    Some(l.oid.to_ascii_lowercase()).filter(|o| is_sha256(o)),
                ),
                None => (e.size, None),
            };
            RepoFile {
                path: e.path,
                size,
                sha256,
            }
        }));
        match next {
            Some(n) => url = n,
            None => return Ok(files),
        }
    }
    bail!("the listing of {what} has more than {MAX_PAGES} pages")
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// A model in a repository: one GGUF file or all the shards of one.
#[derive(Debug, PartialEq)]
struct Candidate {
    /// The path without `.gguf` and without the shard suffix: what the tag is looked for in.
    stem: String,
    files: Vec<RepoFile>,
    /// Shards expected (1 for a single file).
    n_shards: usize,
}

impl Candidate {
    fn label(&self) -> String {
        quant_label(base_name(&self.stem))
    }
}

/// Groups a listing's GGUF files into models, in the listing's order.
fn candidates(files: &[RepoFile]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for f in files {
        let lower = f.path.to_ascii_lowercase();
        if !lower.ends_with(".gguf") || base_name(&lower).contains("mmproj") {
            continue;
        }
        match split_name(&f.path) {
            Some((stem, _, n)) => {
                match out.iter_mut().find(|c| c.stem == stem && c.n_shards == n) {
                    Some(c) => c.files.push(f.clone()),
                    None => out.push(Candidate {
                        stem: stem.to_string(),
                        files: vec![f.clone()],
                        n_shards: n,
                    }),
                }
            }
            None => out.push(Candidate {
                stem: f.path[..f.path.len() - ".gguf".len()].to_string(),
                files: vec![f.clone()],
                n_shards: 1,
            }),
        }
    }
    for c in &mut out {
        c.files
            .sort_by_key(|f| split_name(&f.path).map_or(0, |(_, i, _)| i));
    }
    out
}

/// `(stem, index, count)` of a shard's path `STEM-00002-of-00003.gguf` (1-based index).
fn split_name(path: &str) -> Option<(&str, usize, usize)> {
    let head = path
        .strip_suffix(".gguf")
        .or_else(|| path.strip_suffix(".GGUF"))?;
    // "-NNNNN-of-NNNNN" is 15 bytes.
    let cut = head.len().checked_sub(15)?;
    let (stem, tail) = (head.get(..cut)?, head.get(cut..)?);
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    let (i, n) = (tail.get(1..6)?, tail.get(10..15)?);
    if !tail.starts_with('-') || tail.get(6..10) != Some("-of-") || !digits(i) || !digits(n) {
        return None;
    }
    let (i, n): (usize, usize) = (i.parse().ok()?, n.parse().ok()?);
    (!stem.is_empty() && i >= 1 && i <= n && n <= MAX_SHARDS).then_some((stem, i, n))
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `name` carries the quantization `tag` as a whole word: `Q4_K` is in
/// `model-Q4_K.gguf` but not in `model-Q4_K_M.gguf`, `Q4_0` not in `model-IQ4_0`.
fn tag_matches(name: &str, tag: &str) -> bool {
    let (name, tag) = (name.to_ascii_uppercase(), tag.to_ascii_uppercase());
    let bytes = name.as_bytes();
    name.match_indices(&tag).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + tag.len()).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The quantization a file name carries (`Q4_K_M` of `Llama-3.2-1B-Q4_K_M`), for the list
/// of what a repository has; the name itself when none is recognised.
fn quant_label(stem: &str) -> String {
    let looks_like_quant = |p: &str| {
        let u = p.to_ascii_uppercase();
        ["Q", "IQ", "TQ", "F", "BF", "MXFP"].iter().any(|pre| {
            u.strip_prefix(pre)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
    };
    stem.rsplit(['-', '.'])
        .find(|p| looks_like_quant(p))
        .map_or_else(|| stem.to_string(), str::to_ascii_uppercase)
}

/// The model of `cands` that `quant` names (see the module docs for the default).
fn choose<'a>(cands: &'a [Candidate], quant: Option<&str>, what: &str) -> Result<&'a Candidate> {
    if cands.is_empty() {
        bail!("{what} has no GGUF file");
    }
    let found = match quant {
        Some(tag) => cands.iter().find(|c| tag_matches(base_name(&c.stem), tag)),
        None => PREFERRED_QUANTS
            .iter()
            .find_map(|tag| cands.iter().find(|c| tag_matches(base_name(&c.stem), tag)))
            .or(cands.first()),
    };
    let Some(c) = found else {
        let mut labels: Vec<String> = Vec::new();
        for c in cands {
            let l = c.label();
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        bail!(
            "{what} has no GGUF file tagged {}; it has: {} (pull one as {what}:{})",
            quant.unwrap_or_default(),
            labels.join(", "),
            labels[0]
        );
    };
    if c.files.len() != c.n_shards {
        let have: Vec<&str> = c.files.iter().map(|f| base_name(&f.path)).collect();
        bail!(
            "{what}: the split model {} has {} of its {} shards in the repository ({})",
            base_name(&c.stem),
            c.files.len(),
            c.n_shards,
            have.join(", ")
        );
    }
    Ok(c)
}

fn hub_plan(
    http: &Http,
    endpoint: &str,
    owner: &str,
    repo: &str,
    quant: Option<&str>,
) -> Result<Plan> {
    let what = format!("hf.co/{owner}/{repo}");
    let files = list_repo(http, endpoint, owner, repo)?;
    let cands = candidates(&files);
    let c = choose(&cands, quant, &what)?;
    let parts: Vec<Part> = c
        .files
        .iter()
        .map(|f| {
            Ok(Part {
                url: format!(
                    "{endpoint}/{owner}/{repo}/resolve/{REVISION}/{}",
                    encode_path(&f.path)
                ),
                local: local_name(base_name(&f.path))?,
                size: Some(f.size),
                sha256: f.sha256.clone(),
                sha256_from: "the Hub's listing",
            })
        })
        .collect::<Result<_>>()?;
    let split = c.n_shards > 1;
    let name = local_name(&format!("{}.gguf", base_name(&c.stem)))?;
    Ok(Plan {
        what: format!("{what} ({})", base_name(&c.stem)),
        name,
        parts,
        split,
    })
}

fn url_plan(http: &Http, url: &str, sha256: Option<String>) -> Result<Plan> {
    let origin =
        Origin::of(url).ok_or_else(|| anyhow!("'{url}' is not an http:// or https:// URL"))?;
    let path = url[origin.0.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let file = percent_decode(base_name(path));
    if !file.to_ascii_lowercase().ends_with(".gguf") {
        bail!("'{url}' does not name a .gguf file");
    }
    let mut parts = Vec::new();
    let (name, split) = match split_name(&file) {
        Some((stem, _, n)) => {
            if sha256.is_some() {
                bail!("--sha256 checks one file, and '{url}' is one shard of a model split in {n}");
            }
            // Every shard sits beside the one named, under the same name but its number.
            let named = &file[stem.len()..];
            let ext = &named[15..];
            let Some(at) = url.rfind(named) else {
                bail!("cannot tell the other shards' addresses from '{url}'");
            };
            for i in 1..=n {
                let shard = format!("-{i:05}-of-{n:05}{ext}");
                let shard_url = format!("{}{shard}{}", &url[..at], &url[at + named.len()..]);
                parts.push(Part {
                    url: shard_url,
                    local: local_name(&format!("{stem}{shard}"))?,
                    size: None,
                    sha256: None,
                    sha256_from: "the server",
                });
            }
            (local_name(&format!("{stem}.gguf"))?, true)
        }
        None => {
            parts.push(Part {
                url: url.to_string(),
                local: local_name(&file)?,
                size: None,
                sha256_from: if sha256.is_some() {
                    "--sha256"
                } else {
                    "the server"
                },
                sha256,
            });
            (local_name(&file)?, false)
        }
    };
    // What the server says of each file before anything is fetched: its size and, if it
    // states one, its sha256. A server that does not answer HEAD is asked again by the GET.
    for p in &mut parts {
        if let Ok(reply) = http.send(Method::Head, &p.url, None) {
            if reply.status() == 200 {
                p.size = reply.total_size();
                if p.sha256.is_none() {
                    p.sha256 = reply.sha256();
                }
            }
        }
    }
    Ok(Plan {
        what: url.to_string(),
        name,
        parts,
        split,
    })
}

/// A file name safe to create in the models directory.
fn local_name(name: &str) -> Result<String> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.len() > 255
    {
        bail!("'{name}' cannot be a file name in the models directory");
    }
    Ok(name.to_string())
}

// ---------------------------------------------------------------------------------------
// Fetching a plan.

/// What a joined model was made of, kept beside it as `.NAME.pull.json`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct JoinRecord {
    parts: Vec<RecordPart>,
    size: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct RecordPart {
    name: String,
    size: u64,
    sha256: String,
}

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.pull.json"))
}

fn fetch_plan(http: &Http, plan: &Plan, dir: &Path) -> Result<PathBuf> {
    let dest = dir.join(&plan.name);
    if !plan.split {
        let part = &plan.parts[0];
        if let Some(note) = up_to_date(&dest, part)? {
            eprintln!("{} is up to date ({}{note})", plan.name, dest.display());
            return Ok(dest);
        }
        if dest.exists() {
            eprintln!(
                "{} differs from what {} states; pulling it again",
                dest.display(),
                plan.what
            );
        }
        eprintln!("pulling {} into {}", plan.what, dest.display());
        let got = download(http, part, &dest, &plan.name)?;
        report(&plan.name, &dest, &got, part);
        return Ok(dest);
    }

    let record = record_path(dir, &plan.name);
    if dest.is_file() {
        if let Some(r) = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<JoinRecord>(&b).ok())
        {
            let same_parts = r.parts.len() == plan.parts.len()
                && r.parts.iter().zip(&plan.parts).all(|(r, p)| {
                    r.name == p.local
                        && p.size.is_none_or(|s| s == r.size)
                        && p.sha256.as_ref().is_none_or(|s| *s == r.sha256)
                });
            if same_parts && file_len(&dest) == Some(r.size) && sha256_file(&dest)? == r.sha256 {
                eprintln!("{} is up to date ({})", plan.name, dest.display());
                return Ok(dest);
            }
        }
    }
    let n = plan.parts.len();
    eprintln!(
        "pulling {} into {} ({n} shards, joined after download)",
        plan.what,
        dest.display()
    );
    let mut shards = Vec::with_capacity(n);
    let mut parts = Vec::with_capacity(n);
    for (i, part) in plan.parts.iter().enumerate() {
        let shard = dir.join(&part.local);
        let label = format!("[{}/{n}] {}", i + 1, part.local);
        let got = match up_to_date(&shard, part)? {
            Some(_) => {
                eprintln!("{label} is already here");
                Got {
                    size: file_len(&shard).unwrap_or(0),
                    sha256: sha256_file(&shard)?,
                    verified: part.sha256.is_some(),
                }
            }
            None => {
                let got = download(http, part, &shard, &label)?;
                report(&label, &shard, &got, part);
                got
            }
        };
        parts.push(RecordPart {
            name: part.local.clone(),
            size: got.size,
            sha256: got.sha256,
        });
        shards.push(shard);
    }
    eprintln!("joining {n} shards into {}", plan.name);
    if let Some(sink) = &http.sink {
        sink(PullEvent::Status(format!("joining {n} shards")));
    }
    let partial = partial_path(&dest);
    if let Err(e) = join_shards(&shards, &partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("cannot join the shards of {}", plan.name)));
    }
    let joined = JoinRecord {
        parts,
        size: file_len(&partial).unwrap_or(0),
        sha256: sha256_file(&partial)?,
    };
    std::fs::rename(&partial, &dest)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
    std::fs::write(&record, serde_json::to_vec_pretty(&joined)?)
        .with_context(|| format!("cannot write {}", record.display()))?;
    for s in &shards {
        let _ = std::fs::remove_file(s);
    }
    eprintln!("saved {} ({})", plan.name, dest.display());
    Ok(dest)
}

/// `Some(note)` when `dest` is already the file `part` describes: its size and sha256
/// match what the source states (`note` says when there was no sha256 to compare).
fn up_to_date(dest: &Path, part: &Part) -> Result<Option<&'static str>> {
    let Some(len) = file_len(dest) else {
        return Ok(None);
    };
    if part.size.is_some_and(|s| s != len) {
        return Ok(None);
    }
    match &part.sha256 {
        Some(want) => Ok((sha256_file(dest)? == *want).then_some("")),
        None => Ok(Some(
            "; its sha256 could not be checked, the server states none",
        )),
    }
}

fn report(label: &str, dest: &Path, got: &Got, part: &Part) {
    if got.verified {
        eprintln!("saved {label} ({}), sha256 verified", dest.display());
    } else {
        let hint = if part.url.starts_with("http") && part.sha256.is_none() {
            "; pass --sha256 HEX to check it"
        } else {
            ""
        };
        eprintln!(
            "saved {label} ({}); could not verify it: the server states no sha256 (the file's is {}){hint}",
            dest.display(),
            got.sha256
        );
    }
}

/// A finished download.
struct Got {
    size: u64,
    sha256: String,
    verified: bool,
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn file_len(p: &Path) -> Option<u64> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// Downloads `part` to `dest` through `dest.partial`, resuming what is there, retrying a
/// dropped connection; checks the size and sha256 and renames the file into place. A file
/// that fails its check is removed.
fn download(http: &Http, part: &Part, dest: &Path, label: &str) -> Result<Got> {
    let partial = partial_path(dest);
    let mut fetched = None;
    for attempt in 1..=ATTEMPTS {
        match fetch_into(http, part, &partial, label) {
            Ok(f) => {
                fetched = Some(f);
                break;
            }
            Err(f) if f.retry && attempt < ATTEMPTS => {
                eprintln!(
                    "{label}: {:#}; retrying ({attempt} of {})",
                    f.err,
                    ATTEMPTS - 1
                );
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
            Err(f) => {
                let kept = file_len(&partial).unwrap_or(0);
                if kept == 0 {
                    let _ = std::fs::remove_file(&partial);
                } else {
                    return Err(f.err.context(format!(
                        "download of {label} stopped; {} kept in {}, run the same command again to resume",
                        human(kept),
                        partial.display()
                    )));
                }
                return Err(f.err.context(format!("cannot download {label}")));
            }
        }
    }
    let fetched = fetched.ok_or_else(|| anyhow!("cannot download {label}"))?;
    if let Some(sink) = &http.sink {
        sink(PullEvent::Verifying);
    }
    let corrupt = |why: String| -> anyhow::Error {
        let _ = std::fs::remove_file(&partial);
        anyhow!("{why}; the corrupted download was removed, run the same command again to fetch it anew")
    };
    if let Some(size) = part.size {
        if fetched.size != size {
            return Err(corrupt(format!(
                "{label} is {} bytes, the source says {size}",
                fetched.size
            )));
        }
    }
    let (want, from) = match (&part.sha256, fetched.server_sha256) {
        (Some(s), _) => (Some(s.clone()), part.sha256_from),
        (None, s) => (s, "the server"),
    };
    if let Some(want) = &want {
        if fetched.sha256 != *want {
            return Err(corrupt(format!(
                "checksum mismatch for {label}: its sha256 is {}, {from} states {want}",
                fetched.sha256
            )));
        }
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
    Ok(Got {
        size: fetched.size,
        sha256: fetched.sha256,
        verified: want.is_some(),
    })
}

/// The bytes of a download, all in the partial file.
struct Fetched {
    size: u64,
    sha256: String,
    /// The sha256 the server stated for the file, if any.
    server_sha256: Option<String>,
}

/// One try at completing `partial` from `part.url`.
fn fetch_into(http: &Http, part: &Part, partial: &Path, label: &str) -> Result<Fetched, Failure> {
    let io = |what: &str, e: std::io::Error| Failure {
        retry: false,
        err: anyhow!("{what} {}: {e}", partial.display()),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(|e| io("cannot open", e))?;
    let mut have = file.metadata().map_err(|e| io("cannot stat", e))?.len();
    if part.size.is_some_and(|s| have > s) {
        have = 0;
    }
    let mut hasher = Sha256::new();
    if part.size.is_some_and(|s| have == s) {
        // Complete but not yet checked (the last run stopped before the check).
        hash_prefix(&mut file, have, &mut hasher).map_err(|e| io("cannot read", e))?;
        return Ok(Fetched {
            size: have,
            sha256: hex(&hasher.finalize()),
            server_sha256: None,
        });
    }

    let reply = http.send(Method::Get, &part.url, (have > 0).then_some(have))?;
    let status = reply.status();
    let server_sha256 = reply.sha256();
    if let (Some(listed), Some(served)) = (&part.sha256, &server_sha256) {
        // What the user expects is checked against the bytes, not against the server's word.
        if listed != served && part.sha256_from != "--sha256" {
            return Err(Failure {
                retry: false,
                err: anyhow!("{label} changed on the server while it was being pulled (sha256 {served}, {} stated {listed})", part.sha256_from),
            });
        }
    }
    match status {
        206 if have > 0 => {
            let range = reply.header("content-range").and_then(parse_content_range);
            match range {
                Some((start, total)) if start == have => {
                    if let (Some(t), Some(s)) = (total, part.size) {
                        if t != s {
                            return Err(size_failure(label, t, s));
                        }
                    }
                }
                _ => {
                    // A range that does not start where the file stops: start over.
                    file.set_len(0).map_err(|e| io("cannot truncate", e))?;
                    return Err(Failure {
                        retry: true,
                        err: anyhow!(
                            "the server sent the wrong range ({:?}) for byte {have}",
                            reply.header("content-range")
                        ),
                    });
                }
            }
        }
        200 => {
            if have > 0 {
                eprintln!("{label}: the server does not resume downloads; starting over");
                have = 0;
            }
        }
        416 if have > 0 => {
            // The partial file is no prefix of the file (the file changed, or it is longer).
            file.set_len(0).map_err(|e| io("cannot truncate", e))?;
            return Err(Failure {
                retry: true,
                err: anyhow!("the server refused to resume from byte {have}; starting over"),
            });
        }
        s => return Err(status_failure(s, label, &reply.url, http.token.is_some())),
    }
    let remaining = reply.content_length();
    let total = part.size.or_else(|| remaining.map(|r| have + r));
    if let (Some(s), Some(r)) = (part.size, remaining) {
        if have.checked_add(r) != Some(s) {
            return Err(size_failure(label, have.saturating_add(r), s));
        }
    }

    file.set_len(have).map_err(|e| io("cannot truncate", e))?;
    hash_prefix(&mut file, have, &mut hasher).map_err(|e| io("cannot read", e))?;
    file.seek(SeekFrom::Start(have))
        .map_err(|e| io("cannot seek in", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut body = reply.response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let digest = match &part.sha256 {
        Some(s) => format!("sha256:{s}"),
        None => part.local.clone(),
    };
    let mut progress =
        Progress::new(label, total, have).report_to(http.sink.clone(), &part.local, digest);
    let result = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break Err(Failure {
                    retry: true,
                    err: anyhow!("the connection broke after {}: {e}", human(have)),
                })
            }
        };
        if total.is_some_and(|t| have + n as u64 > t) {
            drop(out);
            let _ = std::fs::remove_file(partial);
            return Err(Failure {
                retry: false,
                err: anyhow!(
                    "the server sent more than the {} bytes of {label}; the download was removed",
                    total.unwrap_or(0)
                ),
            });
        }
        if let Err(e) = out.write_all(&buf[..n]) {
            break Err(io("cannot write", e));
        }
        hasher.update(&buf[..n]);
        have += n as u64;
        progress.update(have);
    };
    progress.finish();
    let file = out
        .into_inner()
        .map_err(|e| io("cannot write", e.into_error()))?;
    file.sync_all().map_err(|e| io("cannot sync", e))?;
    result?;
    if total.is_some_and(|t| have < t) {
        return Err(Failure {
            retry: true,
            err: anyhow!(
                "the connection ended after {} of {}",
                human(have),
                human(total.unwrap_or(0))
            ),
        });
    }
    Ok(Fetched {
        size: have,
        sha256: hex(&hasher.finalize()),
        server_sha256,
    })
}

fn size_failure(label: &str, served: u64, listed: u64) -> Failure {
    Failure {
        retry: false,
        err: anyhow!("the server offers {served} bytes for {label}, the source states {listed}"),
    }
}

/// Feeds the first `len` bytes of `file` to `hasher`.
fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let copied = std::io::copy(&mut (&mut *file).take(len), hasher)?;
    if copied != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the partial file shrank while it was read",
        ));
    }
    Ok(())
}

/// `(first byte, total size)` of `Content-Range: bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    if last < first {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, total))
}

// ---------------------------------------------------------------------------------------
// HTTP.

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Get,
    Head,
}

/// A failed request or download, and whether trying again may help.
struct Failure {
    err: anyhow::Error,
    retry: bool,
}

/// Runs `f` up to [`ATTEMPTS`] times while it fails in a way worth retrying.
fn retrying<T>(what: &str, mut f: impl FnMut() -> Result<T, Failure>) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.retry && attempt < ATTEMPTS => {
                eprintln!(
                    "{what}: {:#}; retrying ({attempt} of {})",
                    e.err,
                    ATTEMPTS - 1
                );
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                attempt += 1;
            }
            Err(e) => return Err(e.err),
        }
    }
}

fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}

/// The error for an answer with status `status`; 429 and 5xx are worth retrying.
fn status_failure(status: u16, what: &str, url: &str, has_token: bool) -> Failure {
    let err = match status {
        401 if has_token => anyhow!("{what}: the server refused HF_TOKEN (401 Unauthorized)"),
        401 => anyhow!("{what} was not found, or is private or gated: set HF_TOKEN to a token that can read it (401 Unauthorized)"),
        403 => anyhow!("{what}: access refused (403 Forbidden); a gated model needs its terms accepted on its page by the account HF_TOKEN belongs to"),
        404 => anyhow!("{what} was not found (404 Not Found at {url})"),
        s => anyhow!("{what}: the server answered {s} for {url}"),
    };
    Failure {
        err,
        retry: status == 429 || (500..600).contains(&status),
    }
}

/// Scheme and authority of a URL, lowercased: where a bearer token may go.
#[derive(Debug, PartialEq, Eq)]
struct Origin(String);

impl Origin {
    fn of(url: &str) -> Option<Origin> {
        let lower = url.to_ascii_lowercase();
        let scheme = ["https://", "http://"]
            .into_iter()
            .find(|s| lower.starts_with(s))?;
        let rest = &url[scheme.len()..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        Some(Origin(format!("{scheme}{}", &rest[..end])))
    }

    fn same(&self, other: &Origin) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

/// `location` (a redirect's target or a `Link`) made absolute against `base`.
fn join_url(base: &str, location: &str) -> String {
    let location = location.trim();
    if Origin::of(location).is_some() {
        return location.to_string();
    }
    let Some(origin) = Origin::of(base) else {
        return location.to_string();
    };
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &origin.0[..origin.0.find("://").unwrap_or(0)];
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", origin.0);
    }
    let path = base[origin.0.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{}{dir}{location}", origin.0)
}

/// The HTTP client: redirects followed by hand, the token kept on its host.
struct Http {
    agent: ureq::Agent,
    token: Option<String>,
    token_origin: Option<Origin>,
    /// Where progress also goes (`/api/pull`).
    sink: Option<PullSink>,
}

/// The final answer to a request, with what the first answer of its redirect chain said.
struct Reply {
    response: ureq::http::Response<ureq::Body>,
    /// The URL that answered.
    url: String,
    /// `X-Linked-Etag` / `X-Linked-Size` of any answer in the chain (the Hub puts them on
    /// the resolve URL's redirect, the CDN does not repeat them).
    linked_etag: Option<String>,
    linked_size: Option<u64>,
}

impl Reply {
    fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The file's size: the Hub's `X-Linked-Size`, the total of a `Content-Range`, or the
    /// `Content-Length` of a whole answer.
    fn total_size(&self) -> Option<u64> {
        self.linked_size
            .or_else(|| {
                self.header("content-range")
                    .and_then(parse_content_range)
                    .and_then(|r| r.1)
            })
            .or_else(|| {
                (self.status() == 200)
                    .then(|| self.content_length())
                    .flatten()
            })
    }

    /// The sha256 the server states: an `X-Linked-Etag` or `ETag` that is one.
    fn sha256(&self) -> Option<String> {
        self.linked_etag
            .as_deref()
            .and_then(etag_sha256)
            .or_else(|| self.header("etag").and_then(etag_sha256))
    }
}

/// The sha256 an entity tag carries, if it is one (`"…"` or `W/"…"` around 64 hex digits).
fn etag_sha256(tag: &str) -> Option<String> {
    let t = tag.trim();
    let t = t.strip_prefix("W/").unwrap_or(t);
    let t = t.trim_matches('"').to_ascii_lowercase();
    is_sha256(&t).then_some(t)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Http {
    /// A client that sends `HF_TOKEN`, if set, to `endpoint`'s host.
    fn new(endpoint: Option<&str>) -> Http {
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent: config.into(),
            token: std::env::var("HF_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
            token_origin: endpoint.and_then(Origin::of),
            sink: None,
        }
    }

    /// Sends `method` to `url`, with `Range: bytes=FROM-` when `from` is given, following
    /// up to [`MAX_REDIRECTS`] redirects.
    fn send(&self, method: Method, url: &str, from: Option<u64>) -> Result<Reply, Failure> {
        let mut url = url.to_string();
        let mut linked_etag = None;
        let mut linked_size = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = match method {
                Method::Get => self.agent.get(&url),
                Method::Head => self.agent.head(&url),
            }
            .header("Accept-Encoding", "identity");
            if let Some(from) = from {
                req = req.header("Range", format!("bytes={from}-"));
            }
            let origin = Origin::of(&url);
            if let (Some(token), Some(o), Some(t)) = (&self.token, &origin, &self.token_origin) {
                if o.same(t) {
                    req = req.header("Authorization", format!("Bearer {}", token.trim()));
                }
            }
            let response = req.call().map_err(|e| Failure {
                retry: is_transient(&e),
                err: anyhow!("cannot fetch {url}: {e}"),
            })?;
            let headers = response.headers();
            let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            if linked_etag.is_none() {
                linked_etag = text("x-linked-etag").map(str::to_string);
            }
            if linked_size.is_none() {
                linked_size = text("x-linked-size").and_then(|v| v.trim().parse().ok());
            }
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(location) = text("location") else {
                    return Err(Failure {
                        retry: false,
                        err: anyhow!("{url} redirects ({status}) without a Location"),
                    });
                };
                url = join_url(&url, location);
                continue;
            }
            return Ok(Reply {
                response,
                url,
                linked_etag,
                linked_size,
            });
        }
        Err(Failure {
            retry: false,
            err: anyhow!("too many redirects (more than {MAX_REDIRECTS}), the last to {url}"),
        })
    }
}

/// `path` with every byte but unreserved ones and `/` percent-encoded, for a URL.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` sequences decoded (invalid ones kept as they are; the result lossily UTF-8).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(owner: &str, repo: &str, quant: Option<&str>) -> Source {
        Source::Hub {
            owner: owner.into(),
            repo: repo.into(),
            quant: quant.map(Into::into),
        }
    }

    #[test]
    fn references_parse_as_ollama_reads_them() {
        let p = |s: &str| Source::parse(s).unwrap();
        assert_eq!(
            p("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF"),
            Some(hub("bartowski", "Llama-3.2-1B-Instruct-GGUF", None))
        );
        assert_eq!(
            p("huggingface.co/a/b:q4_k_m"),
            Some(hub("a", "b", Some("q4_k_m")))
        );
        assert_eq!(
            p("https://HF.co/a/b:Q8_0"),
            Some(hub("a", "b", Some("Q8_0")))
        );
        assert_eq!(p("hf.co/a/b:latest"), Some(hub("a", "b", None)));
        assert_eq!(p("hf.co/a/b/"), Some(hub("a", "b", None)));
        assert_eq!(
            p("https://huggingface.co/a/b/blob/main/x.gguf"),
            Some(Source::Url(
                "https://huggingface.co/a/b/resolve/main/x.gguf".into()
            ))
        );
        assert_eq!(
            p("http://127.0.0.1:8/x.gguf"),
            Some(Source::Url("http://127.0.0.1:8/x.gguf".into()))
        );
        assert_eq!(p("smollm2"), None);
        assert_eq!(p("models/x.gguf"), None);
        for bad in [
            "hf.co/a",
            "hf.co/a/b/c",
            "hf.co/a/b:",
            "hf.co/a/b:Q4 K",
            "hf.co/../b",
            "hf.co/a b/c",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    fn file(path: &str) -> RepoFile {
        RepoFile {
            path: path.into(),
            size: 1,
            sha256: None,
        }
    }

    #[test]
    fn quantization_is_chosen_by_whole_tag() {
        let files: Vec<RepoFile> = [
            "README.md",
            "m-IQ4_XS.gguf",
            "m-Q4_0.gguf",
            "m-Q4_0_4_4.gguf",
            "m-Q4_K_M.gguf",
            "m-Q4_K_S.gguf",
            "mmproj-m-f16.gguf",
            "Q8_0/m-Q8_0-00002-of-00002.gguf",
            "Q8_0/m-Q8_0-00001-of-00002.gguf",
            "m.F16.gguf",
        ]
        .map(file)
        .into();
        let cands = candidates(&files);
        let pick = |q: Option<&str>| choose(&cands, q, "hf.co/o/r").map(|c| c.stem.clone());
        assert_eq!(pick(None).unwrap(), "m-Q4_K_M");
        assert_eq!(pick(Some("q4_k_s")).unwrap(), "m-Q4_K_S");
        assert_eq!(pick(Some("Q4_0")).unwrap(), "m-Q4_0");
        assert_eq!(pick(Some("iq4_xs")).unwrap(), "m-IQ4_XS");
        assert_eq!(pick(Some("f16")).unwrap(), "m.F16");
        let split = choose(&cands, Some("Q8_0"), "x").unwrap();
        assert_eq!(split.stem, "Q8_0/m-Q8_0");
        assert_eq!(split.files[0].path, "Q8_0/m-Q8_0-00001-of-00002.gguf");
        let e = pick(Some("Q5_K_M")).unwrap_err().to_string();
        assert!(
            e.contains("IQ4_XS, Q4_0, Q4_0_4_4, Q4_K_M, Q4_K_S, Q8_0, F16"),
            "{e}"
        );
        assert!(!e.contains("MMPROJ"), "{e}");

        let only: Vec<RepoFile> = ["b.gguf", "a-Q4_0.gguf"].map(file).into();
        assert_eq!(
            choose(&candidates(&only), None, "x").unwrap().stem,
            "a-Q4_0"
        );
        let first: Vec<RepoFile> = ["b-Q6_K.gguf", "a-Q8_0.gguf"].map(file).into();
        assert_eq!(
            choose(&candidates(&first), None, "x").unwrap().stem,
            "b-Q6_K"
        );
        let missing: Vec<RepoFile> = ["s-00001-of-00003.gguf", "s-00003-of-00003.gguf"]
            .map(file)
            .into();
        let e = choose(&candidates(&missing), None, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 of its 3 shards"), "{e}");
    }

    #[test]
    fn shard_names() {
        assert_eq!(
            split_name("a/m-Q8_0-00002-of-00003.gguf"),
            Some(("a/m-Q8_0", 2, 3))
        );
        assert_eq!(split_name("m-00004-of-00003.gguf"), None);
        assert_eq!(split_name("m-0001-of-00003.gguf"), None);
        assert_eq!(split_name("-00001-of-00003.gguf"), None);
        assert_eq!(split_name("m.gguf"), None);
    }

    #[test]
    fn headers_and_urls() {
        let sha = "a".repeat(64);
        assert_eq!(etag_sha256(&format!("\"{sha}\"")), Some(sha.clone()));
        assert_eq!(
            etag_sha256(&format!("W/\"{}\"", sha.to_uppercase())),
            Some(sha.clone())
        );
        assert_eq!(etag_sha256("\"abc-12\""), None);
        assert_eq!(parse_content_range("bytes 10-19/20"), Some((10, Some(20))));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes 19-10/20"), None);
        assert_eq!(
            next_link("<https://h/api/x?cursor=2>; rel=\"next\""),
            Some("https://h/api/x?cursor=2".into())
        );
        assert_eq!(next_link("<https://h/a>; rel=\"prev\""), None);
        assert_eq!(join_url("https://h:1/a/b?q", "/c"), "https://h:1/c");
        assert_eq!(join_url("https://h/a/b", "c"), "https://h/a/c");
        assert_eq!(join_url("https://h/a/b", "//cdn/x"), "https://cdn/x");
        assert_eq!(join_url("https://h/a/b", "http://o/x"), "http://o/x");
        assert!(Origin::of("http://LOCALHOST:9/x")
            .unwrap()
            .same(&Origin::of("http://localhost:9").unwrap()));
        assert!(!Origin::of("http://localhost:9/x")
            .unwrap()
            .same(&Origin::of("http://127.0.0.1:9").unwrap()));
        assert_eq!(encode_path("d/a b+c.gguf"), "d/a%20b%2Bc.gguf");
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(quant_label("Llama-3.2-1B-Instruct-q4_k_m"), "Q4_K_M");
        assert_eq!(quant_label("model"), "model");
    }
}
