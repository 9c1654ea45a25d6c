//! One file per architecture, each a `load` that names the file's tensors and fills in the
//! blocks of a [`Decoder`] (or, for BERT, an [`Encoder`]); this registry maps
//! `general.architecture` to it. Adding an architecture is a new file here plus one line
//! in [`ARCHS`].

mod bert;
mod gemma3;
mod llama;
mod olmoe;
mod phi3;
mod qwen2;
mod qwen3;

use std::sync::Arc;

use hearth_gguf::GgufFile;

use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::error::Result;
use crate::ModelConfig;

/// An architecture Hearth runs: its GGUF name and its loader.
pub struct Arch {
    /// `general.architecture`.
    pub name: &'static str,
    pub load: Loader,
}

/// What an architecture file builds.
pub enum Loader {
    /// A decoder-only transformer, for generation (and pooled embeddings).
    Decoder(fn(&Arc<GgufFile>, &ModelConfig) -> Result<Decoder>),
    /// An encoder, for embeddings only.
    Encoder(fn(&Arc<GgufFile>, &ModelConfig) -> Result<Encoder>),
}

/// Every architecture Hearth runs. The config check and the error for an unknown one
/// derive from this table.
pub const ARCHS: &[Arch] = &[
    // Llama 1/2/3.x, Mistral, SmolLM and other llama-shaped models; Mixtral.
    Arch {
        name: "llama",
        load: Loader::Decoder(llama::load),
    },
    Arch {
        name: "qwen2",
        load: Loader::Decoder(qwen2::load),
    },
    Arch {
        name: "qwen3",
        load: Loader::Decoder(qwen3::load),
    },
    Arch {
        name: "gemma3",
        load: Loader::Decoder(gemma3::load),
    },
    Arch {
        name: "phi3",
        load: Loader::Decoder(phi3::load),
    },
    // Qwen 3 MoE: the Qwen 3 block with experts.
    Arch {
        name: "qwen3moe",
        load: Loader::Decoder(qwen3::load),
    },
    // Qwen 2 MoE: the Qwen 2 block with experts and a shared expert.
    Arch {
        name: "qwen2moe",
        load: Loader::Decoder(qwen2::load),
    },
    Arch {
        name: "olmoe",
        load: Loader::Decoder(olmoe::load),
    },
    // BERT encoders: sentence embeddings (all-MiniLM, BGE, E5, ...).
    Arch {
        name: "bert",
        load: Loader::Encoder(bert::load),
    },
];

/// The registry entry of `name`.
pub fn find(name: &str) -> Option<&'static Arch> {
    ARCHS.iter().find(|a| a.name == name)
}

/// The names of [`ARCHS`], comma-separated (for error messages).
pub fn supported() -> String {
    ARCHS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}
