//! The model: tokenizer, chat template, one file per architecture, the KV cache, and
//! `Model::forward(&Batch, &mut KvCache) -> Logits`. It never sees requests, only batches.

pub mod arch;
pub mod chat;
mod config;
pub mod decoder;
pub mod encoder;
mod error;
pub mod fim;
mod kv_cache;
pub mod layers;
pub mod output;
pub mod quantize;
pub mod reference;
mod team;
pub mod tensor;
pub mod tokenizer;

use std::path::Path;
use std::sync::Arc;

use hearth_gguf::GgufFile;

pub use chat::{ChatMessage, ChatTemplate, ToolCall};
pub use config::{ModelConfig, Pooling, MAX_CONTEXT};
pub use error::{ModelError, Result};
pub use fim::{Fim, FimPrompt, FimRequest};
pub use kv_cache::{available_memory, KvCache, KvLayer, KvType};
pub use tokenizer::Tokenizer;

/// Tokens to run through the network together, from one or more sequences.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// `[n_tokens]`
    pub tokens: Vec<u32>,
    /// `[n_tokens]`: position of each token in its sequence.
    pub positions: Vec<u32>,
    /// `[n_tokens]`: whether the logits of this row are wanted.
    pub output: Vec<bool>,
    /// `[n_tokens]`: the sequence of each token, an index into `block_tables`.
    pub seq: Vec<u32>,
    /// Per sequence, the KV-cache blocks holding its positions, in order. Empty means one
    /// sequence laid out over the cache's blocks in order (a single-sequence cache).
    pub block_tables: Vec<Vec<u32>>,
}

impl Batch {
    /// `tokens` of one sequence at consecutive positions from `start`, with logits for the
    /// last one only (or all of them).
    pub fn contiguous(tokens: &[u32], start: usize, all_logits: bool) -> Batch {
        let n = tokens.len();
        Batch {
            tokens: tokens.to_vec(),
            positions: (start..start + n).map(|p| p as u32).collect(),
            output: (0..n).map(|i| all_logits || i + 1 == n).collect(),
            seq: vec![0; n],
            block_tables: Vec::new(),
        }
    }

    /// Adds one token of sequence `seq` (an index into `block_tables`).
    pub fn push(&mut self, token: u32, pos: usize, seq: usize, output: bool) {
        self.tokens.push(token);
        self.positions.push(pos as u32);
        self.seq.push(seq as u32);
        self.output.push(output);
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
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
    net: Net,
}

/// The network a model runs.
enum Net {
    Decoder(decoder::Decoder),
    Encoder(encoder::Encoder),
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
        let arch = arch::find(&config.arch)
            .ok_or_else(|| ModelError::UnknownArchitecture(config.arch.clone()))?;
        let net = match arch.load {
            arch::Loader::Decoder(load) => Net::Decoder(load(&file, &config)?),
            arch::Loader::Encoder(load) => Net::Encoder(load(&file, &config)?),
        };
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
        Ok(Model {
            config,
            tokenizer,
            chat_template,
            file,
            net,
        })
    }

    /// The decoder's blocks, as the architecture file described them; `None` for an
    /// encoder.
    pub fn decoder(&self) -> Option<&decoder::Decoder> {
        match &self.net {
            Net::Decoder(d) => Some(d),
            Net::Encoder(_) => None,
        }
    }

    /// Whether this is an encoder (BERT): it embeds, and cannot generate.
    pub fn is_encoder(&self) -> bool {
        matches!(self.net, Net::Encoder(_))
    }

    /// One L2-normalized vector per input, its final hidden states pooled as `pooling`
    /// says (mean, first token or last token). An encoder runs the inputs as one batch;
    /// a decoder runs each alone from an empty cache. Either way an input's vector does
    /// not depend on the others. Inputs must be non-empty, within the vocabulary and, for
    /// an encoder, within its trained context.
    pub fn embed(&self, inputs: &[&[u32]], pooling: Pooling) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let n_embd = c.n_embd;
        if !matches!(pooling, Pooling::Mean | Pooling::Cls | Pooling::Last) {
            return Err(ModelError::Unsupported(format!(
                "pooling '{}' does not give one vector per input{}",
                pooling.name(),
                if pooling == Pooling::Rank {
                    " (a reranker scores pairs: Model::rerank)"
                } else {
                    ""
                }
            )));
        }
        for input in inputs {
            if input.is_empty() {
                return Err(ModelError::BadBatch("an input has no tokens".into()));
            }
            if let Some(&t) = input.iter().find(|&&t| t as usize >= c.n_vocab) {
                return Err(ModelError::BadBatch(format!(
                    "token id {t} is outside the vocabulary ({})",
                    c.n_vocab
                )));
            }
        }
        // Each input's rows of hidden states, `[len][n_embd]` (or only the pooled row).
        let pool = |h: &[f32]| -> Vec<f32> {
            let n = h.len() / n_embd;
            let mut v = match pooling {
                Pooling::Cls => h[..n_embd].to_vec(),
                Pooling::Last => h[(n - 1) * n_embd..].to_vec(),
                _ => {
                    let mut sum = vec![0.0f64; n_embd];
                    for row in h.chunks_exact(n_embd) {
                        sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x as f64);
                    }
                    sum.iter().map(|&s| (s / n as f64) as f32).collect()
                }
            };
            let norm = v
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
            }
            v
        };
        match &self.net {
            Net::Encoder(e) => {
                if let Some(long) = inputs.iter().find(|i| i.len() > c.n_ctx_train) {
                    return Err(ModelError::ContextOverflow {
                        needed: long.len(),
                        n_ctx: c.n_ctx_train,
                        n_ctx_train: c.n_ctx_train,
                    });
                }
                let batch: Vec<encoder::EncoderInput> = inputs
                    .iter()
                    .map(|t| encoder::EncoderInput {
                        tokens: t,
                        n_first: t.len(),
                    })
                    .collect();
                let h = team::with_team(|| e.forward(&batch));
                let mut at = 0;
                Ok(inputs
                    .iter()
                    .map(|i| {
                        let rows = &h[at * n_embd..(at + i.len()) * n_embd];
                        at += i.len();
                        pool(rows)
                    })
                    .collect())
            }
            Net::Decoder(d) => inputs
                .iter()
                .map(|tokens| {
                    let mut kv =
                        KvCache::try_paged(c.n_layer, 1, tokens.len(), c.n_embd_kv(), KvType::F16)?;
                    let all = pooling == Pooling::Mean;
                    let mut batch = Batch::contiguous(tokens, 0, all);
                    batch.block_tables = vec![vec![0]];
                    let (_, h) = team::with_team(|| d.hidden(&batch, &mut kv));
                    Ok(pool(&h))
                })
                .collect(),
        }
    }

    /// Whether this model scores query-document pairs ([`Model::rerank`]): an encoder with
    /// a one-label classification head (a cross-encoder).
    pub fn can_rerank(&self) -> bool {
        matches!(&self.net, Net::Encoder(e) if e.head.as_ref().is_some_and(|h| h.n_out() == 1))
    }

    /// A cross-encoder's input for a query and a document, each tokenized without special
    /// tokens: `[CLS] query [SEP] document [SEP]` (the model's BOS where it adds one, its
    /// EOS, else SEP, after each part, as llama.cpp and the Hugging Face tokenizer's pair
    /// template both make it), and the length of `[CLS] query [SEP]`, token type 0; the
    /// rest is type 1. A pair longer than `max_len` is cut longest-first (a token off the
    /// end of the longer part until it fits, the Hugging Face tokenizer's default) when
    /// `truncate` is set, and refused otherwise.
    pub fn rerank_input(
        &self,
        query: &[u32],
        document: &[u32],
        max_len: usize,
        truncate: bool,
    ) -> Result<(Vec<u32>, usize)> {
        let tok = &self.tokenizer;
        let bos = tok.bos_id().filter(|_| tok.add_bos());
        let sep = tok.eos_id().or(tok.special_tokens().sep).ok_or_else(|| {
            ModelError::Unsupported(
                "the vocabulary has no EOS or SEP token to separate a query from a document".into(),
            )
        })?;
        let n_special = usize::from(bos.is_some()) + 2;
        let (mut nq, mut nd) = (query.len(), document.len());
        if nq + nd + n_special > max_len {
            if !truncate || max_len < n_special + 2 {
                return Err(ModelError::ContextOverflow {
                    needed: nq + nd + n_special,
                    n_ctx: max_len,
                    n_ctx_train: self.config.n_ctx_train,
                });
            }
            while nq + nd + n_special > max_len {
                if nq > nd {
                    nq -= 1;
                } else {
                    nd -= 1;
                }
            }
        }
        let mut ids = Vec::with_capacity(nq + nd + n_special);
        ids.extend(bos);
        ids.extend_from_slice(&query[..nq]);
        ids.push(sep);
        let n_first = ids.len();
        ids.extend_from_slice(&document[..nd]);
        ids.push(sep);
        Ok((ids, n_first))
    }

    /// A cross-encoder's relevance score for each input, a query-document pair (`[CLS]
    /// query [SEP] document [SEP]`, the tokens from `n_first` on of token type 1): the raw
    /// logit of its classification head over the `[CLS]` hidden state, as the model's own
    /// (Hugging Face) forward pass gives it, before any sigmoid. The inputs run as one
    /// batch; a pair's score does not depend on the others. Inputs must be non-empty,
    /// within the vocabulary and the trained context, and `n_first` within the input.
    pub fn rerank(&self, inputs: &[encoder::EncoderInput]) -> Result<Vec<f32>> {
        let c = &self.config;
        let Net::Encoder(e) = &self.net else {
            return Err(ModelError::Unsupported(
                "reranking needs a cross-encoder; this model is a decoder".into(),
            ));
        };
        let head = match &e.head {
            Some(h) if h.n_out() == 1 => h,
            Some(h) => {
                return Err(ModelError::Unsupported(format!(
                    "this model's classifier gives {} scores; reranking needs one",
                    h.n_out()
                )))
            }
            None => {
                return Err(ModelError::Unsupported(
                    "this encoder has no classification head (cls.output): it embeds, and \
                     cannot rerank"
                        .into(),
                ))
            }
        };
        for input in inputs {
            if input.tokens.is_empty() {
                return Err(ModelError::BadBatch("an input has no tokens".into()));
            }
            if input.n_first > input.tokens.len() {
                return Err(ModelError::BadBatch(format!(
                    "an input's first segment ({}) is longer than the input ({})",
                    input.n_first,
                    input.tokens.len()
                )));
            }
            if let Some(&t) = input.tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
                return Err(ModelError::BadBatch(format!(
                    "token id {t} is outside the vocabulary ({})",
                    c.n_vocab
                )));
            }
            if input.tokens.len() > c.n_ctx_train {
                return Err(ModelError::ContextOverflow {
                    needed: input.tokens.len(),
                    n_ctx: c.n_ctx_train,
                    n_ctx_train: c.n_ctx_train,
                });
            }
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let n_embd = c.n_embd;
        team::with_team(|| {
            let h = e.forward(inputs);
            // Each input's first row, its [CLS] token: `[n_inputs][n_embd]`.
            let mut cls = Vec::with_capacity(inputs.len() * n_embd);
            let mut at = 0;
            for input in inputs {
                cls.extend_from_slice(&h[at * n_embd..(at + 1) * n_embd]);
                at += input.tokens.len();
            }
            Ok(head.forward(&cls))
        })
    }

    /// The underlying GGUF file.
    pub fn gguf(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// Checks that this model's heads can be cached in `kv_type` (the block types need
    /// heads of whole blocks of 32). An encoder has no KV cache: any type will do.
    pub fn check_kv_type(&self, kv_type: KvType) -> Result<()> {
        if self.is_encoder() || kv_type.supports(self.config.head_dim) {
            Ok(())
        } else {
            Err(ModelError::BadHyperparameter(format!(
                "a {kv_type} KV cache needs a head size that is a multiple of 32; this model's is {}",
                self.config.head_dim
            )))
        }
    }

    /// A KV cache for one sequence of up to `n_ctx` tokens.
    pub fn new_kv_cache(&self, n_ctx: usize, kv_type: KvType) -> KvCache {
        let c = &self.config;
        KvCache::new(c.n_layer, n_ctx, c.n_embd_kv(), kv_type)
    }

    /// A pool of `n_blocks` KV blocks of `block_size` positions, shared by many sequences.
    pub fn new_paged_kv_cache(
        &self,
        n_blocks: usize,
        block_size: usize,
        kv_type: KvType,
    ) -> KvCache {
        let c = &self.config;
        KvCache::paged(c.n_layer, n_blocks, block_size, c.n_embd_kv(), kv_type)
    }

    /// [`Model::new_paged_kv_cache`], or an error when the pool cannot be held.
    pub fn try_new_paged_kv_cache(
        &self,
        n_blocks: usize,
        block_size: usize,
        kv_type: KvType,
    ) -> Result<KvCache> {
        let c = &self.config;
        KvCache::try_paged(c.n_layer, n_blocks, block_size, c.n_embd_kv(), kv_type)
    }

    /// Runs `batch` through the network, storing its keys and values in `kv`.
    pub fn forward(&self, batch: &Batch, kv: &mut KvCache) -> Result<Logits> {
        let Net::Decoder(decoder) = &self.net else {
            return Err(ModelError::Unsupported(
                "this model is an encoder: it embeds text and cannot generate".into(),
            ));
        };
        let n = batch.tokens.len();
        let bad = |msg: String| Err(ModelError::BadBatch(msg));
        if n == 0 || batch.positions.len() != n || batch.output.len() != n || batch.seq.len() != n {
            return bad(format!(
                "{n} tokens, {} positions, {} output flags, {} sequence ids",
                batch.positions.len(),
                batch.output.len(),
                batch.seq.len()
            ));
        }
        if let Some(&t) = batch
            .tokens
            .iter()
            .find(|&&t| t as usize >= self.config.n_vocab)
        {
            return bad(format!(
                "token id {t} is outside the vocabulary ({})",
                self.config.n_vocab
            ));
        }
        if batch.block_tables.is_empty() {
            // One sequence over the whole cache, in block order.
            if let Some(&s) = batch.seq.iter().find(|&&s| s != 0) {
                return bad(format!("sequence {s} has no block table"));
            }
            let max_pos = batch.positions.iter().max().copied().unwrap_or(0) as usize;
            if max_pos >= kv.n_ctx() {
                return Err(ModelError::ContextOverflow {
                    needed: max_pos + 1,
                    n_ctx: kv.n_ctx(),
                    n_ctx_train: self.config.n_ctx_train,
                });
            }
            let mut b = batch.clone();
            b.block_tables = vec![(0..kv.n_blocks() as u32).collect()];
            return Ok(team::with_team(|| decoder.forward(&b, kv)));
        }
        if let Some(&b) = batch
            .block_tables
            .iter()
            .flatten()
            .find(|&&b| b as usize >= kv.n_blocks())
        {
            return bad(format!(
                "block {b} is outside the KV cache ({} blocks)",
                kv.n_blocks()
            ));
        }
        for (&s, &p) in batch.seq.iter().zip(&batch.positions) {
            let Some(table) = batch.block_tables.get(s as usize) else {
                return bad(format!("sequence {s} has no block table"));
            };
            if p as usize >= table.len() * kv.block_size() {
                return bad(format!(
                    "position {p} of sequence {s} is past its {} KV blocks",
                    table.len()
                ));
            }
        }
        // The whole pass runs with the pool's threads as one spinning team (`team.rs`).
        Ok(team::with_team(|| decoder.forward(batch, kv)))
    }
}
