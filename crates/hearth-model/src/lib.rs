//! The model: tokenizer, chat template, one file per architecture, the KV cache, and
//! `Model::forward(&Batch, &mut KvCache) -> Logits`. It never sees requests, only batches.

pub mod arch;
pub mod chat;
mod config;
mod error;
mod kv_cache;
pub mod quantize;
pub mod reference;
pub mod tensor;
pub mod tokenizer;

use std::path::Path;
use std::sync::Arc;

use hearth_gguf::GgufFile;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use kv_cache::{KvCache, KvLayer, KvType};
pub use tokenizer::Tokenizer;

/// Tokens of one sequence to run through the network together.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// `[n_tokens]`
    pub tokens: Vec<u32>,
    /// `[n_tokens]`: position of each token in its sequence.
    pub positions: Vec<u32>,
    /// `[n_tokens]`: whether the logits of this row are wanted.
    pub output: Vec<bool>,
}

impl Batch {
    /// `tokens` at consecutive positions from `start`, with logits for the last one only.
    pub fn contiguous(tokens: &[u32], start: usize, all_logits: bool) -> Batch {
        let n = tokens.len();
        Batch {
            tokens: tokens.to_vec(),
            positions: (start..start + n).map(|p| p as u32).collect(),
            output: (0..n).map(|i| all_logits || i + 1 == n).collect(),
        }
    }
}

/// Logits of the batch rows that asked for them.
#[derive(Debug, Clone)]
pub struct Logits {
    pub n_vocab: usize,
    /// Batch row of each output row.
    pub rows: Vec<usize>,
    /// `[rows.len()][n_vocab]`
    pub data: Vec<f32>,
}

impl Logits {
    /// The logits of output row `i` (the i-th row that asked for them).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_vocab..(i + 1) * self.n_vocab]
    }

    /// The logits of the last output row.
    pub fn last(&self) -> &[f32] {
        self.row(self.rows.len() - 1)
    }
}

/// A loaded GGUF model: hyperparameters, tokenizer, chat template, and the network.
pub struct Model {
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The Jinja chat template from `tokenizer.chat_template`, if the model has one.
    pub chat_template: Option<ChatTemplate>,
    file: Arc<GgufFile>,
    arch: Box<dyn arch::Architecture>,
}

impl Model {
    /// Memory-maps and checks a GGUF file and prepares it to run.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let file = Arc::new(GgufFile::open(path)?);
        Self::from_gguf(file)
    }

    /// Prepares an already opened GGUF file to run.
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Model> {
        let config = ModelConfig::from_gguf(&file)?;
        let arch = arch::load(&file, &config)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.n_vocab() != config.n_vocab {
            return Err(ModelError::BadHyperparameter(format!(
                "vocabulary has {} tokens but the model's output has {}",
                tokenizer.n_vocab(),
                config.n_vocab
            )));
        }
        let chat_template = match file.get_str("tokenizer.chat_template") {
            Some(src) => Some(ChatTemplate::new(src, &tokenizer)?),
            None => None,
        };
        Ok(Model { config, tokenizer, chat_template, file, arch })
    }

    /// The underlying GGUF file.
    pub fn gguf(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// A KV cache for one sequence of up to `n_ctx` tokens.
    pub fn new_kv_cache(&self, n_ctx: usize, kv_type: KvType) -> KvCache {
        let c = &self.config;
        KvCache::new(c.n_layer, n_ctx, c.n_embd_kv(), kv_type)
    }

    /// Runs `batch` through the network, storing its keys and values in `kv`.
    pub fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Result<Logits> {
        let n = batch.tokens.len();
        if n == 0 || batch.positions.len() != n || batch.output.len() != n {
            return Err(ModelError::BadBatch(format!(
                "{n} tokens, {} positions, {} output flags",
                batch.positions.len(),
                batch.output.len()
            )));
        }
        if let Some(&t) = batch.tokens.iter().find(|&&t| t as usize >= self.config.n_vocab) {
            return Err(ModelError::BadBatch(format!("token id {t} is outside the vocabulary ({})", self.config.n_vocab)));
        }
        let max_pos = batch.positions.iter().max().copied().unwrap_or(0) as usize;
        if max_pos >= kv.n_ctx() {
            return Err(ModelError::ContextOverflow {
                needed: max_pos + 1,
                n_ctx: kv.n_ctx(),
                n_ctx_train: self.config.n_ctx_train,
            });
        }
        Ok(self.arch.forward(batch, kv))
    }
}
