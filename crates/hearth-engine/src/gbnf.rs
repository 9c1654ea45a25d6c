//! llama.cpp's GBNF grammars, rewritten into llguidance's Lark-like syntax.
//!
//! GBNF: rules `name ::= alternatives`, where an alternative is a sequence of quoted
//! literals (`"..."` with `\n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH` escapes), character
//! classes (`[a-z]`, `[^"\\]`), `.` (any character), rule names and parenthesized groups,
//! each optionally followed by `*`, `+`, `?` or `{m}`, `{m,}`, `{m,n}`, `{,n}`; `#` starts a
//! comment; generation starts at `root`. The rewrite keeps the structure token for token:
//! literals become JSON-quoted strings, classes and `.` single-character regexes, names
//! `g_name` (dashes as underscores), and `start: g_root` opens it.

use std::collections::HashMap;
use std::fmt::Write;

use crate::constraint::GrammarError;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Define,
    Literal(String),
    /// A bracket class: negated, and (first, last) character ranges.
    Class(bool, Vec<(char, char)>),
    Any,
    Open,
    Close,
    Pipe,
    /// `*`, `+`, `?`, or a `{...}` repetition, as written.
    Postfix(String),
}

fn err(msg: impl Into<String>) -> GrammarError {
    GrammarError(format!("invalid GBNF grammar: {}", msg.into()))
}

/// One escaped or plain character of a literal or class at `s[i..]`; returns it and the
/// index after it.
fn char_at(s: &[char], i: usize) -> Result<(char, usize), GrammarError> {
    let c = s[i];
    if c != '\\' {
        return Ok((c, i + 1));
    }
    let Some(&e) = s.get(i + 1) else {
        return Err(err("a backslash ends the grammar"));
    };
    let hex = |n: usize| -> Result<(char, usize), GrammarError> {
        let digits: String = s.get(i + 2..i + 2 + n).unwrap_or(&[]).iter().collect();
        let v = u32::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| digits.len() == n)
            .ok_or_else(|| err(format!("bad escape \\{e}{digits}")))?;
        let c =
            char::from_u32(v).ok_or_else(|| err(format!("\\{e}{digits} is not a character")))?;
        Ok((c, i + 2 + n))
    };
    match e {
        'n' => Ok(('\n', i + 2)),
        'r' => Ok(('\r', i + 2)),
        't' => Ok(('\t', i + 2)),
        '\\' | '"' | '[' | ']' | '-' | '^' => Ok((e, i + 2)),
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        _ => Err(err(format!("unknown escape \\{e}"))),
    }
}

fn lex(text: &str) -> Result<Vec<Tok>, GrammarError> {
    let s: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            ':' if s[i..].starts_with(&[':', ':', '=']) => {
                out.push(Tok::Define);
                i += 3;
            }
            '"' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    match s.get(i) {
                        None => return Err(err("unterminated string literal")),
                        Some('"') => break,
                        Some(_) => {
                            let (ch, next) = char_at(&s, i)?;
                            lit.push(ch);
                            i = next;
                        }
                    }
                }
                i += 1;
                out.push(Tok::Literal(lit));
            }
            '[' => {
                i += 1;
                let negated = s.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match s.get(i) {
                        None => return Err(err("unterminated character class")),
                        Some(']') => break,
                        Some(_) => {
                            let (lo, next) = char_at(&s, i)?;
                            i = next;
                            let mut hi = lo;
                            if s.get(i) == Some(&'-') && s.get(i + 1).is_some_and(|&c| c != ']') {
                                let (h, next) = char_at(&s, i + 1)?;
                                if h < lo {
                                    return Err(err(format!("empty range {lo}-{h}")));
                                }
                                hi = h;
                                i = next;
                            }
                            ranges.push((lo, hi));
                        }
                    }
                }
                i += 1;
                out.push(Tok::Class(negated, ranges));
            }
            '.' => {
                out.push(Tok::Any);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '*' | '+' | '?' => {
                out.push(Tok::Postfix(c.to_string()));
                i += 1;
            }
            '{' => {
                let end = s[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or_else(|| err("unterminated {m,n} repetition"))?;
                let body: String = s[i + 1..i + end]
                    .iter()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                let ok = !body.is_empty()
                    && body != ","
                    && body.chars().all(|c| c.is_ascii_digit() || c == ',')
                    && body.matches(',').count() <= 1;
                if !ok {
                    return Err(err(format!("bad repetition {{{body}}}")));
                }
                // `{,n}` is `{0,n}`.
                let body = if body.starts_with(',') {
                    format!("0{body}")
                } else {
                    body
                };
                out.push(Tok::Postfix(format!("{{{body}}}")));
                i += end + 1;
            }
            _ if c.is_ascii_alphanumeric() || c == '-' => {
                let start = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '-') {
                    i += 1;
                }
                out.push(Tok::Name(s[start..i].iter().collect()));
            }
            _ => return Err(err(format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

fn class_regex(negated: bool, ranges: &[(char, char)]) -> String {
    let mut r = String::from("/[");
    if negated {
        r.push('^');
    }
    for &(lo, hi) in ranges {
        let _ = write!(r, "\\x{{{:x}}}", lo as u32);
        if hi != lo {
            let _ = write!(r, "-\\x{{{:x}}}", hi as u32);
        }
    }
    r.push_str("]/");
    r
}

/// The Lark-like grammar equivalent to the GBNF `text`.
pub fn to_lark(text: &str) -> Result<String, GrammarError> {
    let toks = lex(text)?;
    // Rules: a name followed by `::=` starts one; everything up to the next such pair is
    // its body (GBNF bodies may span lines).
    let starts: Vec<usize> = (0..toks.len())
        .filter(|&i| matches!(toks[i], Tok::Name(_)) && toks.get(i + 1) == Some(&Tok::Define))
        .collect();
    if starts.first() != Some(&0) {
        return Err(err("expected a rule (`name ::= ...`) at the start"));
    }
    let mut names: HashMap<&str, String> = HashMap::new();
    for &i in &starts {
        let Tok::Name(n) = &toks[i] else {
            unreachable!()
        };
        let lark = format!("g_{}", n.to_ascii_lowercase().replace('-', "_"));
        if names.values().any(|v| *v == lark) && !names.contains_key(n.as_str()) {
            return Err(err(format!(
                "rule names {n} and another differ only in case or dashes"
            )));
        }
        if names.insert(n, lark).is_some() {
            return Err(err(format!("rule {n} is defined twice")));
        }
    }
    if !names.contains_key("root") {
        return Err(err("no root rule"));
    }
    let mut out = String::from("start: g_root\n");
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(toks.len());
        let Tok::Name(n) = &toks[start] else {
            unreachable!()
        };
        let _ = write!(out, "{}:", names[n.as_str()]);
        let mut depth = 0usize;
        // Whether the current alternative has an element yet (an empty one becomes "").
        let mut filled = false;
        for t in &toks[start + 2..end] {
            match t {
                Tok::Name(r) => {
                    let lark = names
                        .get(r.as_str())
                        .ok_or_else(|| err(format!("rule {r} is used but not defined")))?;
                    let _ = write!(out, " {lark}");
                    filled = true;
                }
                Tok::Literal(l) => {
                    let q = serde_json::to_string(l).expect("a string serializes");
                    let _ = write!(out, " {q}");
                    filled = true;
                }
                Tok::Class(neg, ranges) => {
                    let _ = write!(out, " {}", class_regex(*neg, ranges));
                    filled = true;
                }
                Tok::Any => {
                    out.push_str(" /(?s:.)/");
                    filled = true;
                }
                Tok::Open => {
                    out.push_str(" (");
                    depth += 1;
                    filled = false;
                }
                Tok::Close => {
                    if depth == 0 {
                        return Err(err(format!("unbalanced ) in rule {n}")));
                    }
                    if !filled {
                        out.push_str(" \"\"");
                    }
                    out.push_str(" )");
                    depth -= 1;
                    filled = true;
                }
                Tok::Pipe => {
                    if !filled {
                        out.push_str(" \"\"");
                    }
                    out.push_str(" |");
                    filled = false;
                }
                Tok::Postfix(p) => {
                    if !filled || out.ends_with('|') || out.ends_with('(') {
                        return Err(err(format!("{p} follows nothing in rule {n}")));
                    }
                    out.push_str(p);
                }
                Tok::Define => return Err(err(format!("unexpected ::= in rule {n}"))),
            }
        }
        if depth != 0 {
            return Err(err(format!("unbalanced ( in rule {n}")));
        }
        if !filled {
            out.push_str(" \"\"");
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_rules_literals_classes_and_repetitions() {
        let g = r#"
            # a comment
            root ::= greeting ("," ws name){1,3} [.!]?
            greeting ::= "hi\n" | "hello \"you\"" |
            name ::= [^a-z\x41] .+
            ws ::= [ \t]*
        "#;
        let lark = to_lark(g).unwrap();
        let want = concat!(
            "start: g_root\n",
            "g_root: g_greeting ( \",\" g_ws g_name ){1,3} /[\\x{2e}\\x{21}]/?\n",
            "g_greeting: \"hi\\n\" | \"hello \\\"you\\\"\" | \"\"\n",
            "g_name: /[^\\x{61}-\\x{7a}\\x{41}]/ /(?s:.)/+\n",
            "g_ws: /[\\x{20}\\x{9}]/*\n",
        );
        assert_eq!(lark, want);
    }

    #[test]
    fn bad_grammars_name_their_problem() {
        for (g, needle) in [
            ("root ::= foo", "foo is used but not defined"),
            ("expr ::= \"a\"", "no root rule"),
            ("root ::= \"a", "unterminated string"),
            ("root ::= [a-", "unterminated character class"),
            ("root ::= (\"a\"", "unbalanced ("),
            ("root ::= \"a\")", "unbalanced )"),
            ("root ::= * \"a\"", "follows nothing"),
            ("root ::= \"a\"{x}", "bad repetition"),
            ("root ::= \"\\q\"", "unknown escape"),
            ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
            ("\"a\" ::= root", "expected a rule"),
            ("root ::= [z-a]", "empty range"),
        ] {
            let e = to_lark(g).unwrap_err().0;
            assert!(e.contains(needle), "{g:?}: {e}");
        }
    }
}
