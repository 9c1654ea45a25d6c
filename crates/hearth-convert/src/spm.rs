//! A SentencePiece vocabulary (`tokenizer.model`) written as llama.cpp writes it
//! (tokenizer model `llama`, pre-tokenizer `default`).
//!
//! `tokenizer.model` is a `sentencepiece.ModelProto` protocol buffer. Only its first
//! field matters here: the repeated `pieces` (field 1), each a message of `piece` (1,
//! string), `score` (2, float) and `type` (3, enum: 1 normal, 2 unknown, 3 control,
//! 4 user-defined, 5 unused, 6 byte; absent means normal). The trainer and normalizer
//! specs are skipped. A few dozen lines of wire-format reading replace a protobuf crate.
//!
//! The vocabulary, in llama.cpp's format:
//! - `vocab_size` entries (`config.json`'s, else the model's piece count); ids the model
//!   has no piece for are `[PAD<id>]` with score -10000 and type UNUSED.
//! - Each piece's text and score; its type is UNKNOWN, CONTROL, UNUSED or BYTE as the
//!   model says, and NORMAL otherwise (a user-defined piece included).
//! - `added_tokens.json` (name → id) overrides: score -1000, USER_DEFINED.
//! - `tokenizer_config.json`'s `added_tokens_decoder` overrides: score -1000, CONTROL when
//!   `special` or when the text looks like a control token (`<|...|>`, `<pad>`, ...),
//!   else USER_DEFINED with `▁` spelled as a space.
//! - Pieces with ids at or beyond `vocab_size` are dropped.

use std::path::Path;

use serde_json::Value as Json;

use crate::folder::read_json_opt;
use crate::special::looks_special;
use crate::ConvertError;

pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

/// One piece of a `tokenizer.model`.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    /// SentencePiece's type (1 to 6).
    pub kind: i32,
}

/// A SentencePiece vocabulary ready to write.
pub struct SpmVocab {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
}

fn bad(path: &Path, detail: &str) -> ConvertError {
    ConvertError::Tokenizer(format!(
        "{} is not a SentencePiece model: {detail}",
        path.display()
    ))
}

/// A protocol-buffer wire reader over a byte slice.
struct Wire<'b> {
    b: &'b [u8],
    pos: usize,
}

impl<'b> Wire<'b> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// The next field: (number, wire type, payload for length-delimited, fixed32 or
    /// varint value). `None` at the end; `Err` on malformed input.
    fn field(&mut self) -> Result<Option<(u64, Field<'b>)>, &'static str> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint().ok_or("truncated field key")?;
        let (number, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(self.varint().ok_or("truncated varint")?),
            1 => Field::Other(self.take(8).ok_or("truncated fixed64")?),
            2 => {
                let n = self.varint().ok_or("truncated length")?;
                let n = usize::try_from(n).map_err(|_| "length too large")?;
                Field::Bytes(self.take(n).ok_or("length past the end")?)
            }
            5 => {
                let b = self.take(4).ok_or("truncated fixed32")?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => return Err("unsupported wire type"),
        };
        Ok(Some((number, f)))
    }
}

enum Field<'b> {
    Varint(u64),
    Bytes(&'b [u8]),
    Fixed32(u32),
    Other(#[allow(dead_code)] &'b [u8]),
}

/// The pieces of a serialized `sentencepiece.ModelProto`.
pub fn parse_model(bytes: &[u8]) -> Result<Vec<Piece>, &'static str> {
    let mut w = Wire { b: bytes, pos: 0 };
    let mut pieces = Vec::new();
    while let Some((number, f)) = w.field()? {
        let (1, Field::Bytes(msg)) = (number, f) else {
            continue;
        };
        let mut m = Wire { b: msg, pos: 0 };
        let mut p = Piece {
            piece: String::new(),
            score: 0.0,
            kind: NORMAL,
        };
        while let Some((n, f)) = m.field()? {
            match (n, f) {
                (1, Field::Bytes(s)) => {
                    p.piece = std::str::from_utf8(s)
                        .map_err(|_| "a piece is not UTF-8")?
                        .to_owned()
                }
                (2, Field::Fixed32(bits)) => p.score = f32::from_bits(bits),
                (3, Field::Varint(t)) => {
                    p.kind = i32::try_from(t)
                        .ok()
                        .filter(|t| (1..=6).contains(t))
                        .ok_or("a piece has an unknown type")?
                }
                _ => {}
            }
        }
        pieces.push(p);
    }
    if pieces.is_empty() {
        return Err("it has no pieces");
    }
    Ok(pieces)
}

/// Reads `dir/tokenizer.model` (which must exist) and the added-token files beside it.
/// `vocab_size` is `config.json`'s, if it has one. `phi3` follows llama.cpp's Phi-3
/// variant: an added token is CONTROL only when marked `special`, its text is kept as it
/// is, and `tokenizer.json`'s added tokens override too.
pub fn load(dir: &Path, vocab_size: Option<usize>, phi3: bool) -> Result<SpmVocab, ConvertError> {
    let path = dir.join("tokenizer.model");
    let bytes = std::fs::read(&path).map_err(|source| ConvertError::Io {
        path: path.clone(),
        source,
    })?;
    let pieces = parse_model(&bytes).map_err(|d| bad(&path, d))?;
    let n = vocab_size.unwrap_or(pieces.len());
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n];
    let mut types = vec![UNUSED; n];
    for (id, p) in pieces.into_iter().enumerate().take(n) {
        tokens[id] = p.piece;
        scores[id] = p.score;
        types[id] = match p.kind {
            UNKNOWN | CONTROL | UNUSED | BYTE => p.kind,
            _ => NORMAL,
        };
    }
    if let Some(added) = read_json_opt(&dir.join("added_tokens.json"))? {
        if let Some(m) = added.as_object() {
            for (text, id) in m {
                let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) else {
                    continue;
                };
                tokens[id] = text.clone();
                scores[id] = -1000.0;
                types[id] = USER_DEFINED;
            }
        }
    }
    if let Some(cfg) = read_json_opt(&dir.join("tokenizer_config.json"))? {
        if let Some(decoder) = cfg.get("added_tokens_decoder").and_then(Json::as_object) {
            for (id, data) in decoder {
                let Some(id) = id.parse::<usize>().ok().filter(|&i| i < n) else {
                    continue;
                };
                let Some(text) = data.get("content").and_then(Json::as_str) else {
                    continue;
                };
                let special = data.get("special").and_then(Json::as_bool) == Some(true);
                if special || (!phi3 && looks_special(text)) {
                    types[id] = CONTROL;
                    tokens[id] = text.to_owned();
                } else {
                    types[id] = USER_DEFINED;
                    tokens[id] = match phi3 {
                        true => text.to_owned(),
                        false => text.replace('\u{2581}', " "),
                    };
                }
                scores[id] = -1000.0;
            }
        }
    }
    if phi3 {
        if let Some(tj) = read_json_opt(&dir.join("tokenizer.json"))? {
            for a in tj
                .get("added_tokens")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let id = a.get("id").and_then(Json::as_u64).map(|i| i as usize);
                let (Some(id), Some(text)) = (
                    id.filter(|&i| i < n),
                    a.get("content").and_then(Json::as_str),
                ) else {
                    continue;
                };
                let special = a.get("special").and_then(Json::as_bool) == Some(true);
                tokens[id] = text.to_owned();
                scores[id] = -1000.0;
                types[id] = if special { CONTROL } else { USER_DEFINED };
            }
        }
    }
    Ok(SpmVocab {
        tokens,
        scores,
        types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn pieces_parse_and_other_fields_are_skipped() {
        let mut piece = Vec::new();
        piece.push(0x0a);
        varint(3, &mut piece);
        piece.extend_from_slice("▁".as_bytes());
        piece.push(0x15);
        piece.extend_from_slice(&(-2.5f32).to_le_bytes());
        piece.push(0x18);
        varint(6, &mut piece);
        let mut model = vec![0x12, 0x02, 0x08, 0x01]; // trainer_spec { model_type: 1 }
        model.push(0x0a);
        varint(piece.len() as u64, &mut model);
        model.extend_from_slice(&piece);
        let pieces = parse_model(&model).unwrap();
        assert_eq!(
            pieces,
            vec![Piece {
                piece: "▁".into(),
                score: -2.5,
                kind: BYTE
            }]
        );
        assert!(parse_model(&model[..model.len() - 1]).is_err());
        assert!(parse_model(&[0x12, 0x00]).is_err(), "no pieces");
    }
}
