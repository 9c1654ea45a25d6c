//! Stop strings, matched across token boundaries: text that might be the start of a stop
//! string is held back until it is clear either way.

/// Incremental stop-string matcher over streamed text.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released (it could begin a stop string).
    held: String,
    /// The stop string that ended the text, once one has.
    matched: Option<String>,
}

/// What a push released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopEvent {
    /// Text safe to emit.
    Text(String),
    /// A stop string matched: emit this text (what came before the stop) and finish.
    Stop(String),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            matched: None,
        }
    }

    /// Adds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopEvent {
        self.held.push_str(text);
        // A complete stop string: cut at the earliest one.
        if let Some((at, stop)) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|m| m.0)
        {
            let out = self.held[..at].to_string();
            self.matched = Some(stop.clone());
            self.held.clear();
            return StopEvent::Stop(out);
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in self.held.char_indices() {
                let suffix = &self.held[i..];
                if suffix.len() > keep && s.starts_with(suffix) {
                    keep = suffix.len();
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopEvent::Text(out)
    }

    /// The stop string that ended the text, if one did.
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// Releases whatever is still held (the generation ended for another reason).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_across_pieces_and_holds_partial_prefixes() {
        let mut m = StopMatcher::new(vec!["</end>".into()]);
        assert_eq!(m.push("hello <"), StopEvent::Text("hello ".into()));
        assert_eq!(m.push("/en"), StopEvent::Text("".into()));
        assert_eq!(m.push("d> tail"), StopEvent::Stop("".into()));
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ST"), StopEvent::Text("".into()));
        assert_eq!(m.push("ART"), StopEvent::Text("START".into()));
        assert_eq!(m.push("x S"), StopEvent::Text("x ".into()));
        assert_eq!(m.flush(), "S");
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        let mut m = StopMatcher::new(vec!["bb".into(), "a".into(), "é!".into()]);
        assert_eq!(m.push("xxbb a"), StopEvent::Stop("xx".into()));
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("café"), StopEvent::Text("caf".into()));
        assert_eq!(m.push("!"), StopEvent::Stop("".into()));
    }
}
