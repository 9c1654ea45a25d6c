//! `hearth pull` from Hugging Face and from URLs, against a server on loopback that lays
//! out files as the Hub does: the tree API's JSON listing (paged by `Link`), `/resolve/main/`
//! answering 302 to a "CDN" on another port with `X-Linked-Etag` and `X-Linked-Size`, and
//! the CDN serving bytes with `Content-Length`, `Accept-Ranges`, an `ETag` holding the
//! sha256 and `Range` support. Each test sets the server's misbehaviour (a dropped
//! connection, ignored ranges, wrong bytes, bad JSON, a redirect loop) and looks at what
//! the binary did and which requests it sent. Models are hearth-synth's tiny llama, so a
//! joined split model can be run. Every pull goes to a temporary `--models-dir`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use hearth_gguf::{GgufFile, GgufWriter, Value};
use sha2::{Digest, Sha256};

use common::{assert_clean_error, stderr};

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// How the server misbehaves.
#[derive(Default, Clone)]
struct Behaviour {
    /// This many file answers stop halfway (the headers promise the whole file).
    drops: usize,
    /// A `Range` request gets the whole file with 200.
    ignore_range: bool,
    /// The file's bytes are served altered (the headers still state the right sha256).
    corrupt: bool,
    /// The listing is not JSON.
    bad_json: bool,
    /// `/resolve/` redirects to itself.
    redirect_loop: bool,
    /// The CDN's `Content-Length` is absurd.
    huge_length: bool,
    /// Entries per listing page (0: all on one).
    page: usize,
    /// `/files/` answers carry no `ETag`.
    no_etag: bool,
}

/// A request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    port: u16,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    /// `owner/repo` → files (path, bytes).
    repos: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    /// Files served at `/files/NAME`.
    plain: BTreeMap<String, Vec<u8>>,
    behaviour: Behaviour,
    seen: Vec<Seen>,
}

/// The Hub (`api`) and its CDN (`cdn`), two ports of one server.
struct Hub {
    api: u16,
    cdn: u16,
    state: Arc<Mutex<State>>,
}

impl Hub {
    fn start() -> Hub {
        let state = Arc::new(Mutex::new(State::default()));
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let ports = (
            api.local_addr().unwrap().port(),
            cdn.local_addr().unwrap().port(),
        );
        for listener in [api, cdn] {
            let state = state.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let state = state.clone();
                    std::thread::spawn(move || serve(conn, &state, ports));
                }
            });
        }
        Hub {
            api: ports.0,
            cdn: ports.1,
            state,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    fn add(&self, repo: &str, path: &str, bytes: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.repos
            .entry(repo.to_string())
            .or_default()
            .push((path.to_string(), bytes.to_vec()));
    }

    fn add_plain(&self, name: &str, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .plain
            .insert(name.to_string(), bytes.to_vec());
    }

    fn behave(&self, b: Behaviour) {
        self.state.lock().unwrap().behaviour = b;
    }

    /// The requests seen so far, and forgets them.
    fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.state.lock().unwrap().seen)
    }

    /// `hearth ARGS…` with this server as `HF_ENDPOINT`, `token` as `HF_TOKEN`, no proxy.
    fn hearth(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
        c.args(args).env("HF_ENDPOINT", self.endpoint());
        for v in [
            "HF_TOKEN",
            "HEARTH_MODELS",
            "ALL_PROXY",
            "all_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            c.env_remove(v);
        }
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        c.output().expect("run hearth")
    }

    fn pull(&self, what: &str, dir: &Path) -> Output {
        self.hearth(&["pull", what, "--models-dir", dir.to_str().unwrap()], None)
    }
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}

/// Answers one request (each connection carries one).
fn serve(mut conn: TcpStream, state: &Mutex<State>, (api, cdn): (u16, u16)) {
    let port = conn.local_addr().unwrap().port();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let seen = Seen {
        method: method.clone(),
        path: target.clone(),
        port,
        headers,
    };
    let mut s = state.lock().unwrap();
    s.seen.push(seen.clone());
    let b = s.behaviour.clone();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some(repo) = rest.strip_suffix("/tree/main") else {
            return respond(&mut conn, "404 Not Found", &[], b"");
        };
        let Some(files) = s.repos.get(repo) else {
            return respond(
                &mut conn,
                "404 Not Found",
                &[],
                b"{\"error\":\"Repository not found\"}",
            );
        };
        assert!(query.contains("recursive=true"), "{query}");
        if b.bad_json {
            return respond(
                &mut conn,
                "200 OK",
                &[],
                b"[{\"type\": \"file\", \"path\": ",
            );
        }
        let cursor: usize = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("cursor="))
            .map_or(0, |c| c.parse().unwrap());
        let page = if b.page == 0 { files.len() } else { b.page };
        let end = (cursor + page).min(files.len());
        let entries: Vec<serde_json::Value> = files[cursor..end]
            .iter()
            .map(|(p, bytes)| {
                let lfs = p.ends_with(".gguf");
                let mut e = serde_json::json!({
                    "type": "file",
                    "oid": "0123456789abcdef0123456789abcdef01234567",
                    "size": bytes.len(),
                    "path": p,
                });
                if lfs {
                    e["lfs"] = serde_json::json!({
                        "oid": sha256(bytes), "size": bytes.len(), "pointerSize": 134
                    });
                }
                e
            })
            .chain(std::iter::once(serde_json::json!({
                "type": "directory", "oid": "0", "size": 0, "path": "folder"
            })))
            .collect();
        let mut h = vec![("Content-Type", "application/json".to_string())];
        if end < files.len() {
            h.push((
                "Link",
                format!("<http://127.0.0.1:{api}/api/models/{repo}/tree/main?recursive=true&cursor={end}>; rel=\"next\""),
            ));
        }
        return respond(
            &mut conn,
            "200 OK",
            &h,
            serde_json::to_string(&entries).unwrap().as_bytes(),
        );
    }

    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(bytes) = s
            .repos
            .values()
            .flatten()
            .map(|(_, b)| b)
            .find(|b| sha256(b) == sha)
            .cloned()
        else {
            return respond(&mut conn, "404 Not Found", &[], b"");
        };
        assert!(
            query.starts_with("signed="),
            "the CDN URL is used as given: {query}"
        );
        return send_file(&mut conn, &mut s, &seen, &bytes, true);
    }

    if let Some(name) = path.strip_prefix("/files/") {
        let Some(bytes) = s.plain.get(name).cloned() else {
            return respond(&mut conn, "404 Not Found", &[], b"");
        };
        let etag = !b.no_etag;
        return send_file(&mut conn, &mut s, &seen, &bytes, etag);
    }

    // /{owner}/{repo}/resolve/main/{path}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if let [owner, repo, "resolve", "main", file] = segs[..] {
        let repo_id = format!("{owner}/{repo}");
        let file = file.replace("%20", " ");
        let Some(bytes) = s
            .repos
            .get(&repo_id)
            .and_then(|fs| fs.iter().find(|(p, _)| *p == file))
            .map(|(_, b)| b.clone())
        else {
            return respond(
                &mut conn,
                "404 Not Found",
                &[("X-Error-Code", "EntryNotFound".into())],
                b"",
            );
        };
        let sha = sha256(&bytes);
        let location = if b.redirect_loop {
            path.to_string()
        } else {
            format!("http://127.0.0.1:{cdn}/cdn/{sha}?signed=1")
        };
        return respond(
            &mut conn,
            "302 Found",
            &[
                ("Location", location),
                ("X-Linked-Etag", format!("\"{sha}\"")),
                ("X-Linked-Size", bytes.len().to_string()),
                (
                    "X-Repo-Commit",
                    "0123456789abcdef0123456789abcdef01234567".into(),
                ),
                (
                    "ETag",
                    "\"0123456789abcdef0123456789abcdef01234567\"".into(),
                ),
                ("Content-Length", "0".into()),
            ],
            b"",
        );
    }
    respond(&mut conn, "404 Not Found", &[], b"")
}

/// Serves `bytes` as the CDN does: ranges, the sha256 as `ETag`, and the misbehaviour.
fn send_file(conn: &mut TcpStream, s: &mut State, req: &Seen, bytes: &[u8], etag: bool) {
    let b = &mut s.behaviour;
    let mut body = bytes.to_vec();
    if b.corrupt {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    let len = body.len();
    let mut h: Vec<(&str, String)> = vec![
        ("Accept-Ranges", "bytes".into()),
        ("Content-Type", "application/octet-stream".into()),
    ];
    if etag {
        h.push(("ETag", format!("\"{}\"", sha256(bytes))));
    }
    let range = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .map(|r| r.parse::<usize>().unwrap());
    let (status, from) = match range {
        Some(from) if !b.ignore_range => {
            if from >= len {
                h.push(("Content-Range", format!("bytes */{len}")));
                return respond(conn, "416 Range Not Satisfiable", &h, b"");
            }
            h.push(("Content-Range", format!("bytes {from}-{}/{len}", len - 1)));
            ("206 Partial Content", from)
        }
        _ => ("200 OK", 0),
    };
    let length = if b.huge_length {
        "1000000000000000".to_string()
    } else {
        (len - from).to_string()
    };
    h.push(("Content-Length", length));
    if req.method == "HEAD" {
        return respond(conn, status, &h, b"");
    }
    if b.drops > 0 {
        b.drops -= 1;
        let half = (len - from) / 2;
        respond(conn, status, &h, &body[from..from + half]);
        let _ = conn.shutdown(std::net::Shutdown::Both);
        return;
    }
    respond(conn, status, &h, &body[from..]);
}

/// hearth-synth's tiny llama with weights from `seed`.
fn tiny_model(seed: u64) -> Vec<u8> {
    let mut spec = hearth_synth::preset("llama").unwrap();
    spec.seed = seed;
    hearth_synth::generate(&spec).unwrap()
}

/// `bytes` split as llama.cpp's `gguf-split` splits: the first shard with the metadata,
/// every shard with `split.no`, `split.count` and `split.tensors.count`.
fn split(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    let f = GgufFile::from_bytes(bytes.to_vec()).unwrap();
    let tensors = f.tensors();
    let per = tensors.len().div_ceil(n);
    (0..n)
        .map(|i| {
            let mut w = GgufWriter::new();
            if i == 0 {
                for (k, v) in f.metadata() {
                    w.add_kv(k.clone(), v.clone());
                }
            }
            w.add_kv("split.no", Value::U16(i as u16));
            w.add_kv("split.count", Value::U16(n as u16));
            w.add_kv("split.tensors.count", Value::I32(tensors.len() as i32));
            for t in &tensors[i * per..((i + 1) * per).min(tensors.len())] {
                w.add_tensor(
                    t.name.clone(),
                    &t.shape,
                    t.ggml_type,
                    f.tensor_data(t).to_vec(),
                )
                .unwrap();
            }
            w.to_bytes().unwrap()
        })
        .collect()
}

/// A repository `test/tiny-GGUF` with three quantizations (Q8_0 split in three), a
/// vision projector and a README, listed two entries a page.
struct Repo {
    hub: Hub,
    q4_k_m: Vec<u8>,
    q4_0: Vec<u8>,
    q8_0: Vec<u8>,
}

fn repo() -> Repo {
    let hub = Hub::start();
    let (q4_k_m, q4_0, q8_0) = (tiny_model(1), tiny_model(2), tiny_model(3));
    hub.add("test/tiny-GGUF", "README.md", b"# tiny\n");
    hub.add("test/tiny-GGUF", "mmproj-tiny-F16.gguf", &tiny_model(4));
    hub.add("test/tiny-GGUF", "tiny-Q4_0.gguf", &q4_0);
    hub.add("test/tiny-GGUF", "tiny-Q4_K_M.gguf", &q4_k_m);
    for (i, shard) in split(&q8_0, 3).iter().enumerate() {
        let name = format!("Q8_0/tiny-Q8_0-{:05}-of-00003.gguf", i + 1);
        hub.add("test/tiny-GGUF", &name, shard);
    }
    hub.behave(Behaviour {
        page: 2,
        ..Default::default()
    });
    Repo {
        hub,
        q4_k_m,
        q4_0,
        q8_0,
    }
}

/// A pull that failed, saying `needle` on its last line (`error: …`), without a panic.
/// Progress lines may come before it.
fn assert_fails(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "{last:?} lacks {needle:?}; stderr: {err}"
    );
    assert!(o.stdout.is_empty());
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "hearth failed: {}", stderr(o));
    stderr(o)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn default_quant_is_q4_k_m_token_goes_to_the_hub_only_and_a_second_pull_fetches_nothing() {
    let r = repo();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = r.hub.hearth(
        &["pull", "hf.co/test/tiny-GGUF", "--models-dir", d],
        Some("hf_secret"),
    );
    let err = ok(&o);
    assert!(err.contains("sha256 verified"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("tiny-Q4_K_M.gguf")).unwrap(),
        r.q4_k_m
    );
    assert_eq!(names_in(dir.path()), ["tiny-Q4_K_M.gguf"]);

    let seen = r.hub.take_seen();
    let listing: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/api/"))
        .collect();
    assert!(listing.len() >= 4, "the listing is paged: {listing:?}");
    for s in &seen {
        let auth = s.header("authorization");
        if s.port == r.hub.api {
            assert_eq!(auth, Some("Bearer hf_secret"), "{s:?}");
        } else {
            assert_eq!(auth, None, "the token must not reach the CDN: {s:?}");
        }
    }
    assert!(seen
        .iter()
        .any(|s| s.path == "/test/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf"));
    assert!(seen
        .iter()
        .any(|s| s.port == r.hub.cdn && s.method == "GET"));

    let list = common::hearth(&["list", "--models-dir", d]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("tiny-Q4_K_M.gguf"));

    let err = ok(&r.hub.pull("huggingface.co/test/tiny-GGUF", dir.path()));
    assert!(err.contains("up to date"), "{err}");
    assert!(
        !r.hub.take_seen().iter().any(|s| s.port == r.hub.cdn),
        "nothing is downloaded again"
    );
}

#[test]
fn quant_tag_is_case_insensitive_and_a_missing_one_lists_what_exists() {
    let r = repo();
    let dir = tempfile::tempdir().unwrap();
    ok(&r.hub.pull("hf.co/test/tiny-GGUF:q4_0", dir.path()));
    assert_eq!(
        std::fs::read(dir.path().join("tiny-Q4_0.gguf")).unwrap(),
        r.q4_0
    );

    let o = r.hub.pull("hf.co/test/tiny-GGUF:Q5_K_M", dir.path());
    assert_clean_error(&o, "no GGUF file tagged Q5_K_M; it has: Q4_0, Q4_K_M, Q8_0");
    assert!(!stderr(&o).contains("F16"), "a projector is not a model");

    let o = r.hub.pull("hf.co/test/missing", dir.path());
    assert_clean_error(&o, "hf.co/test/missing was not found");
    let o = r.hub.pull("hf.co/test", dir.path());
    assert_clean_error(&o, "expected hf.co/OWNER/REPO");
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let r = repo();
    let file = "tiny-Q4_K_M.gguf";
    let len = r.q4_k_m.len();

    // The connection drops halfway; the retry asks for the rest.
    let dir = tempfile::tempdir().unwrap();
    r.hub.behave(Behaviour {
        drops: 1,
        ..Default::default()
    });
    let err = ok(&r.hub.pull("hf.co/test/tiny-GGUF", dir.path()));
    assert!(err.contains("retrying"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(file)).unwrap(), r.q4_k_m);
    let gets: Vec<Seen> = r
        .hub
        .take_seen()
        .into_iter()
        .filter(|s| s.port == r.hub.cdn)
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={}-", len / 2).as_str())
    );

    // Every try drops: the pull fails and keeps what it has; the next pull resumes.
    let dir = tempfile::tempdir().unwrap();
    r.hub.behave(Behaviour {
        drops: 4,
        ..Default::default()
    });
    let o = r.hub.pull("hf.co/test/tiny-GGUF", dir.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run the same command again to resume"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join(file).exists());
    let kept = std::fs::metadata(dir.path().join(format!("{file}.partial")))
        .unwrap()
        .len();
    assert!(kept > 0 && (kept as usize) < len);
    r.hub.behave(Behaviour::default());
    r.hub.take_seen();
    let err = ok(&r.hub.pull("hf.co/test/tiny-GGUF", dir.path()));
    assert!(err.contains("resuming at"), "{err}");
    let gets: Vec<Seen> = r
        .hub
        .take_seen()
        .into_iter()
        .filter(|s| s.port == r.hub.cdn)
        .collect();
    assert_eq!(gets.len(), 1);
    assert_eq!(
        gets[0].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(std::fs::read(dir.path().join(file)).unwrap(), r.q4_k_m);
    assert_eq!(names_in(dir.path()), [file]);

    // A server that answers a range with the whole file: read from the start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("{file}.partial")),
        &r.q4_k_m[..1000],
    )
    .unwrap();
    r.hub.behave(Behaviour {
        ignore_range: true,
        ..Default::default()
    });
    let err = ok(&r.hub.pull("hf.co/test/tiny-GGUF", dir.path()));
    assert!(err.contains("starting over"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(file)).unwrap(), r.q4_k_m);
}

#[test]
fn a_corrupted_download_is_detected_and_removed() {
    let r = repo();
    let dir = tempfile::tempdir().unwrap();
    r.hub.behave(Behaviour {
        corrupt: true,
        ..Default::default()
    });
    let o = r.hub.pull("hf.co/test/tiny-GGUF", dir.path());
    assert_fails(&o, "checksum mismatch for tiny-Q4_K_M.gguf");
    assert!(stderr(&o).contains("the corrupted download was removed"));
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );

    // An absurd Content-Length is refused before anything is written.
    r.hub.behave(Behaviour {
        huge_length: true,
        ..Default::default()
    });
    let o = r.hub.pull("hf.co/test/tiny-GGUF", dir.path());
    assert_fails(&o, "the server offers 1000000000000000 bytes");
    assert!(
        names_in(dir.path()).is_empty(),
        "{:?}",
        names_in(dir.path())
    );
}

#[test]
fn a_split_model_is_joined_into_one_file_that_runs() {
    let r = repo();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = ok(&r.hub.pull("hf.co/test/tiny-GGUF:Q8_0", dir.path()));
    assert!(err.contains("joining 3 shards"), "{err}");
    assert_eq!(
        names_in(dir.path()),
        [".tiny-Q8_0.gguf.pull.json", "tiny-Q8_0.gguf"],
        "the shards are gone once joined"
    );
    let joined = std::fs::read(dir.path().join("tiny-Q8_0.gguf")).unwrap();
    let f = GgufFile::from_bytes(joined.clone()).unwrap();
    assert!(f.metadata().iter().all(|(k, _)| !k.starts_with("split.")));
    let original = GgufFile::from_bytes(r.q8_0.clone()).unwrap();
    assert_eq!(f.metadata(), original.metadata());
    assert_eq!(f.tensors().len(), original.tensors().len());
    for (a, b) in f.tensors().iter().zip(original.tensors()) {
        assert_eq!(
            (&a.name, &a.shape, a.ggml_type),
            (&b.name, &b.shape, b.ggml_type)
        );
        assert_eq!(f.tensor_data(a), original.tensor_data(b));
    }
    // The writer lays the original out the same way.
    assert_eq!(joined, r.q8_0);

    // It runs by its name in the models directory, as the original does.
    let original_path = tempfile::tempdir().unwrap();
    let original_file = original_path.path().join("o.gguf");
    std::fs::write(&original_file, &r.q8_0).unwrap();
    let run = |m: &str| {
        let o = common::hearth(&[
            "run",
            "-m",
            m,
            "--models-dir",
            d,
            "--raw",
            "--temp",
            "0",
            "-n",
            "8",
            "-t",
            "1",
            "the program",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        o.stdout
    };
    assert_eq!(run("tiny-Q8_0.gguf"), run(original_file.to_str().unwrap()));
    assert_eq!(run("tiny-Q8_0"), run(original_file.to_str().unwrap()));

    r.hub.take_seen();
    let err = ok(&r.hub.pull("hf.co/test/tiny-GGUF:Q8_0", dir.path()));
    assert!(err.contains("up to date"), "{err}");
    assert!(!r.hub.take_seen().iter().any(|s| s.port == r.hub.cdn));
}

#[test]
fn plain_urls_are_checked_against_the_etag_or_sha256_flag() {
    let hub = Hub::start();
    let model = tiny_model(5);
    hub.add_plain("model.gguf", &model);
    let url = format!("{}/files/model.gguf", hub.endpoint());
    let dir = tempfile::tempdir().unwrap();

    let err = ok(&hub.pull(&url, dir.path()));
    assert!(err.contains("sha256 verified"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("model.gguf")).unwrap(), model);
    let err = ok(&hub.pull(&url, dir.path()));
    assert!(err.contains("up to date"), "{err}");

    // No ETag: the file is saved, and the pull says it could not verify it.
    let dir = tempfile::tempdir().unwrap();
    hub.behave(Behaviour {
        no_etag: true,
        ..Default::default()
    });
    let err = ok(&hub.pull(&url, dir.path()));
    assert!(err.contains("could not verify"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("model.gguf")).unwrap(), model);

    // --sha256 checks it; a wrong one removes the file.
    let dir2 = tempfile::tempdir().unwrap();
    let d2 = dir2.path().to_str().unwrap();
    let good = sha256(&model);
    let o = hub.hearth(&["pull", &url, "--sha256", &good, "--models-dir", d2], None);
    assert!(ok(&o).contains("sha256 verified"));
    let dir3 = tempfile::tempdir().unwrap();
    let d3 = dir3.path().to_str().unwrap();
    let o = hub.hearth(
        &[
            "pull",
            &url,
            "--sha256",
            &"0".repeat(64),
            "--models-dir",
            d3,
        ],
        None,
    );
    assert_fails(&o, "checksum mismatch for model.gguf");
    assert!(names_in(dir3.path()).is_empty());

    let o = hub.pull(&format!("{}/files/model.bin", hub.endpoint()), dir.path());
    assert_clean_error(&o, "does not name a .gguf file");
}

#[test]
fn hostile_answers_are_clean_errors() {
    let r = repo();
    let dir = tempfile::tempdir().unwrap();
    r.hub.behave(Behaviour {
        bad_json: true,
        ..Default::default()
    });
    let o = r.hub.pull("hf.co/test/tiny-GGUF", dir.path());
    assert_clean_error(&o, "is not the Hub's JSON");

    r.hub.behave(Behaviour {
        redirect_loop: true,
        ..Default::default()
    });
    let o = r.hub.pull("hf.co/test/tiny-GGUF", dir.path());
    assert_fails(&o, "too many redirects");
    assert!(names_in(dir.path()).is_empty());
}
