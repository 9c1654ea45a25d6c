//! Incremental decoding of generated tokens.

use super::Tokenizer;

/// Turns token ids, one at a time, into text without ever emitting part of a character.
///
/// Byte-level tokens can end in the middle of a UTF-8 sequence (an emoji is often two or
/// three tokens). The decoder holds back an incomplete trailing sequence until the bytes
/// that complete it arrive; bytes that can no longer form a character become U+FFFD as
/// soon as that is certain, exactly as [`Tokenizer::decode`] renders them. Pieces are
/// rendered as by [`Tokenizer::token_to_piece`] (no space clean-up, no prefix-space
/// removal).
///
/// ```ignore
/// let mut stream = tokenizer.stream_decoder(false);
/// for id in generated {
///     print!("{}", stream.push(id));
/// }
/// print!("{}", stream.finish());
/// ```
#[derive(Debug, Clone)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder rendering control tokens as their text when `special` is true.
    pub fn new(tokenizer: &'a Tokenizer, special: bool) -> StreamDecoder<'a> {
        StreamDecoder {
            tokenizer,
            special,
            pending: Vec::new(),
        }
    }

    /// Adds token `id`; returns the text that became complete (often empty or one piece).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tokenizer.token_to_piece(id, self.special);
        self.push_bytes(piece)
    }

    /// Adds raw bytes; returns the text that became complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut done = 0;
        loop {
            match std::str::from_utf8(&self.pending[done..]) {
                Ok(s) => {
                    out.push_str(s);
                    done = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[done..done + valid]));
                    done += valid;
                    match e.error_len() {
                        // Bytes that no continuation can repair.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            done += n;
                        }
                        // An incomplete sequence at the end: wait for more.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..done);
        out
    }

    /// Ends the stream: whatever incomplete sequence is left becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes held back, waiting for the rest of their character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Forgets held-back bytes.
    pub fn reset(&mut self) {
        self.pending.clear();
    }
}
