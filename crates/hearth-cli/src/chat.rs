//! `hearth run`'s interactive chat, on a terminal: line editing and history (rustyline),
//! `"""` blocks and pasted text as one message, slash commands for the session's settings,
//! Ctrl-C to stop an answer, conversations saved and loaded as JSON.
//!
//! Each turn sends the whole conversation; the engine's prefix cache keeps the keys and
//! values of the earlier turns, so only the new tokens run.

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::task::Poll;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::{Hint, Hinter};
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};
use serde::{Deserialize, Serialize};

use hearth_engine::Engine;
use hearth_model::{ChatMessage, Model};

use super::{prompt_ids, report, submit, Answer, Generation, RunArgs};

/// Opens and closes a multi-line message.
const QUOTES: &str = "\"\"\"";

const PROMPT: &str = ">>> ";
const CONTINUATION: &str = "... ";

/// The chat's commands, for `/help` and completion.
const COMMANDS: &[&str] = &[
    "/set", "/show", "/save", "/load", "/clear", "/bye", "/exit", "/quit", "/help", "/?",
];
const SET_OPTIONS: &[&str] = &[
    "parameter",
    "system",
    "think",
    "nothink",
    "verbose",
    "quiet",
];
const SHOW_OPTIONS: &[&str] = &["info", "parameters", "system", "template", "history"];
const HELP_TOPICS: &[&str] = &["set", "show", "shortcuts"];

/// Runs the chat until `/bye` or Ctrl-D. `a` holds the settings it starts with; `path` is
/// the model's file, and `load` how long loading it took (reported with the first turn's
/// `--verbose` statistics).
pub fn chat(
    model: &Model,
    engine: &Engine,
    a: &RunArgs,
    path: &Path,
    load: Duration,
) -> Result<()> {
    // Ctrl-C stops an answer, not the chat: once tokio's handler is installed, SIGINT no
    // longer ends the process. At the prompt the terminal is raw, and Ctrl-C is a key.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the signal handler")?;
    {
        let _in_rt = rt.enter();
        // The handler stays when the listener is dropped.
        #[cfg(unix)]
        drop(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot catch Ctrl-C")?,
        );
    }
    let mut s = Session {
        model,
        engine,
        path,
        args: a.clone(),
        system: a.system.clone(),
        think: None,
        messages: Vec::new(),
        left_out: 0,
        load_time: load,
        rt,
    };

    let config = Config::builder()
        .max_history_size(1000)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .build();
    let mut ed: Editor<ChatHelper, FileHistory> =
        Editor::with_config(config).context("cannot set up the terminal")?;
    ed.set_helper(Some(ChatHelper {
        placeholder: Some(PLACEHOLDER),
    }));
    let history = cache_dir().map(|d| d.join("history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h); // none yet on the first run
    }

    println!(
        "Chatting with {}. Type /? for help, Ctrl-D or /bye to quit.",
        model.config.name.as_deref().unwrap_or("the model")
    );
    loop {
        let (raw, text) = match read_input(&mut ed)? {
            Input::Message { raw, text } => (raw, text),
            Input::Cleared => continue,
            Input::End => break,
        };
        if text.trim().is_empty() {
            continue;
        }
        let _ = ed.add_history_entry(raw);
        if text.trim_start().starts_with('/') {
            match s.command(text.trim()) {
                Flow::Continue => continue,
                Flow::Quit => break,
            }
        }
        s.turn(text);
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Appended, so that chats open at the same time all keep their lines.
        if let Err(e) = ed.append_history(h) {
            eprintln!("warning: cannot save the history to {}: {e}", h.display());
        }
    }
    Ok(())
}

const PLACEHOLDER: &str = "Send a message (/? for help)";

/// One input from the prompt.
enum Input {
    /// A message or command: `raw` as typed (for the history), `text` with a `"""` block's
    /// quotes taken off.
    Message { raw: String, text: String },
    /// Ctrl-C at the prompt: the line (or the open block) is dropped.
    Cleared,
    /// Ctrl-D at an empty prompt.
    End,
}

/// Reads one input: a line, a pasted text (newlines and all: rustyline turns on the
/// terminal's bracketed paste), or a `"""` block, which goes on over further lines until
/// one ends with `"""`.
fn read_input(ed: &mut Editor<ChatHelper, FileHistory>) -> Result<Input> {
    // A line, or the input that ends this one early (Ctrl-C, Ctrl-D).
    let line = |ed: &mut Editor<ChatHelper, FileHistory>,
                prompt: &str|
     -> Result<std::result::Result<String, Input>> {
        if let Some(h) = ed.helper_mut() {
            h.placeholder = (prompt == PROMPT).then_some(PLACEHOLDER);
        }
        match ed.readline(prompt) {
            Ok(l) => Ok(Ok(l)),
            Err(ReadlineError::Interrupted) => Ok(Err(Input::Cleared)),
            Err(ReadlineError::Eof) => Ok(Err(Input::End)),
            Err(e) => Err(anyhow::Error::new(e).context("cannot read the terminal")),
        }
    };
    let first = match line(ed, PROMPT)? {
        Ok(l) => l,
        Err(early) => return Ok(early),
    };
    let Some(at) = block_start(&first) else {
        return Ok(Input::Message {
            text: first.clone(),
            raw: first,
        });
    };
    let mut raw = first.clone();
    let mut body = first[at + QUOTES.len()..].to_string();
    while !body.trim_end().ends_with(QUOTES) {
        let l = match line(ed, CONTINUATION)? {
            Ok(l) => l,
            Err(early) => return Ok(early),
        };
        raw.push('\n');
        raw.push_str(&l);
        body.push('\n');
        body.push_str(&l);
    }
    let body = body.trim_end().strip_suffix(QUOTES).unwrap_or_default();
    Ok(Input::Message {
        text: format!("{}{}", &first[..at], body.trim()),
        raw,
    })
}

/// Where a `"""` block opens in `input`: at its start, or after `/set system`.
fn block_start(input: &str) -> Option<usize> {
    let at = input.len() - input.trim_start().len();
    if input[at..].starts_with(QUOTES) {
        return Some(at);
    }
    let rest = input[at..].strip_prefix("/set")?;
    let rest = rest.trim_start().strip_prefix("system")?;
    let after = rest.trim_start();
    (after.starts_with(QUOTES) && after.len() < rest.len()).then(|| input.len() - after.len())
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Quit,
}

/// What came of one answer.
enum Outcome {
    Done(Generation),
    /// Ctrl-C: the text so far.
    Stopped(String),
}

/// The chat's state: its settings and the conversation so far.
struct Session<'a> {
    model: &'a Model,
    engine: &'a Engine,
    path: &'a Path,
    /// The settings: `hearth run`'s options, changed by `/set`.
    args: RunArgs,
    system: Option<String>,
    /// `enable_thinking` for the chat template (`/set think`, `/set nothink`); unset
    /// leaves the template's default.
    think: Option<bool>,
    /// The turns, without the system message.
    messages: Vec<ChatMessage>,
    /// How many of the first turns' messages no longer fit in the context.
    left_out: usize,
    /// How long loading the model took, until the first turn reports it.
    load_time: Duration,
    rt: tokio::runtime::Runtime,
}

impl Session<'_> {
    /// Sends `text` as the next user message and streams the answer. An error is reported
    /// and the turn dropped.
    fn turn(&mut self, text: String) {
        self.messages.push(ChatMessage::new("user", text));
        let outcome = self
            .prompt()
            .and_then(|ids| Ok((self.answer(ids.clone())?, ids)));
        match outcome {
            Ok((Outcome::Done(g), ids)) => {
                report(&self.args, &ids, &g, self.load_time);
                self.load_time = Duration::ZERO; // the model was loaded once, before the first turn
                self.messages.push(ChatMessage::new("assistant", g.text));
                if !self.args.json {
                    println!();
                }
            }
            Ok((Outcome::Stopped(text), _)) => {
                if !self.args.json {
                    println!("\n");
                }
                // What was shown stays in the conversation; an answer stopped before its
                // first token takes its question with it.
                if text.is_empty() {
                    self.messages.pop();
                } else {
                    self.messages.push(ChatMessage::new("assistant", text));
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                self.messages.pop();
            }
        }
    }

    /// The prompt for the conversation so far. When it would leave too little of the
    /// context for an answer, the oldest turns are left out of it (not out of the
    /// conversation: `/save` keeps them); the system message stays.
    fn prompt(&mut self) -> Result<Vec<u32>> {
        let n_ctx = self.engine.config.n_ctx;
        let room = self.args.max_tokens.min(n_ctx / 4);
        let kwargs = self.kwargs();
        let mut skip = 0;
        loop {
            let ids = prompt_ids(
                self.model,
                &self.args,
                &self.conversation(skip),
                kwargs.as_ref(),
            )?;
            let next_turn =
                (skip + 1..self.messages.len()).find(|&i| self.messages[i].role == "user");
            match next_turn {
                Some(i) if ids.len() + room > n_ctx => skip = i,
                _ => {
                    if skip > self.left_out {
                        eprintln!(
                            "(the oldest {skip} message(s) no longer fit in the context of {n_ctx} tokens: the model no longer sees them)"
                        );
                    }
                    self.left_out = skip;
                    return Ok(ids);
                }
            }
        }
    }

    /// Streams the answer to `ids` until it ends or Ctrl-C; returning drops the receiver,
    /// which cancels the request in the engine.
    fn answer(&self, ids: Vec<u32>) -> Result<Outcome> {
        let mut rx = submit(self.engine, &self.args, ids, self.args.sampling())?;
        let mut answer = Answer::new(&self.args);
        self.rt.block_on(async {
            let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
            let mut watching = true;
            loop {
                let next = std::future::poll_fn(|cx| {
                    if watching {
                        match ctrl_c.as_mut().poll(cx) {
                            Poll::Ready(Ok(())) => return Poll::Ready(None),
                            Poll::Ready(Err(_)) => watching = false,
                            Poll::Pending => {}
                        }
                    }
                    rx.poll_recv(cx).map(Some)
                })
                .await;
                match next {
                    None => return Ok(Outcome::Stopped(answer.into_text())),
                    Some(None) => bail!("the engine stopped"),
                    Some(Some(ev)) => {
                        if let Some(g) = answer.take(ev)? {
                            return Ok(Outcome::Done(g));
                        }
                    }
                }
            }
        })
    }

    /// The messages the template renders: the system message, then the turns from the
    /// `skip`th on.
    fn conversation(&self, skip: usize) -> Vec<ChatMessage> {
        let mut m: Vec<ChatMessage> = self
            .system
            .iter()
            .map(|s| ChatMessage::new("system", s.clone()))
            .collect();
        m.extend(self.messages[skip..].iter().cloned());
        m
    }

    fn kwargs(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.think.map(|t| {
            let mut m = serde_json::Map::new();
            m.insert("enable_thinking".into(), t.into());
            m
        })
    }

    /// Runs a slash command. Nothing here reaches the model.
    fn command(&mut self, line: &str) -> Flow {
        let (cmd, rest) = split_word(line);
        match cmd {
            "/bye" | "/exit" | "/quit" => return Flow::Quit,
            "/clear" => {
                self.messages.clear();
                self.left_out = 0;
                println!("Cleared the conversation.");
            }
            "/?" | "/help" => help(rest),
            "/set" => self.set(rest),
            "/show" => self.show(rest),
            "/save" => self.save(rest),
            "/load" => self.load(rest),
            _ => println!("Unknown command '{cmd}'. Type /? for help"),
        }
        Flow::Continue
    }

    fn set(&mut self, rest: &str) {
        let (what, value) = split_word(rest);
        match what {
            "" => help("set"),
            "parameter" => {
                let (name, value) = split_word(value);
                if name.is_empty() || value.is_empty() {
                    println!(
                        "Usage: /set parameter NAME VALUE (names: {})",
                        PARAMETERS.join(", ")
                    );
                    return;
                }
                let before = self.args.clone();
                let result = set_parameter(&mut self.args, name, value).and_then(|()| {
                    if self.args.max_tokens == 0 {
                        return Err(
                            "num_predict must be at least 1 (or -1: until the context is full)"
                                .into(),
                        );
                    }
                    self.args.sampling().validate(self.model.config.n_vocab)
                });
                match result {
                    Ok(()) => println!("Set parameter '{name}' to '{value}'"),
                    Err(e) => {
                        self.args = before;
                        println!("Cannot set '{name}': {e}");
                    }
                }
            }
            "system" => {
                if value.is_empty() {
                    self.system = None;
                    println!("Cleared the system message.");
                } else {
                    self.system = Some(value.to_string());
                    println!("Set the system message.");
                }
            }
            "think" | "nothink" => {
                self.think = Some(what == "think");
                let reads = self
                    .model
                    .chat_template
                    .as_ref()
                    .is_some_and(|t| t.source().contains("enable_thinking"));
                println!(
                    "Set 'enable_thinking' to {}{}.",
                    what == "think",
                    if reads {
                        ""
                    } else {
                        " (this model's chat template does not read it)"
                    }
                );
            }
            "verbose" | "quiet" => {
                self.args.verbose = what == "verbose";
                println!(
                    "{}",
                    if self.args.verbose {
                        "Set 'verbose' mode: timings after each answer."
                    } else {
                        "Set 'quiet' mode."
                    }
                );
            }
            _ => println!("Unknown /set option '{what}'. Type /? set for help"),
        }
    }

    fn show(&self, what: &str) {
        match what {
            "" | "info" => {
                let c = &self.model.config;
                println!("  Model");
                row("name", c.name.as_deref().unwrap_or("(unnamed)"));
                row("file", &self.path.display().to_string());
                row("architecture", &c.arch);
                row(
                    "context length",
                    &format!(
                        "{} (trained on {})",
                        self.engine.config.n_ctx, c.n_ctx_train
                    ),
                );
                row("embedding length", &c.n_embd.to_string());
                row("layers", &c.n_layer.to_string());
                println!();
                println!("  Parameters");
                for (k, v) in Parameters::of(&self.args).rows() {
                    row(k, &v);
                }
                println!();
                println!("  System");
                println!("    {}", self.system.as_deref().unwrap_or("(none)"));
                println!();
            }
            "parameters" => {
                for (k, v) in Parameters::of(&self.args).rows() {
                    println!("{k:<18}{v}");
                }
            }
            "system" => match &self.system {
                Some(s) => println!("{s}"),
                None => println!("No system message was set."),
            },
            "template" => match &self.model.chat_template {
                Some(t) => println!("{}", t.source()),
                None => println!("The model has no chat template."),
            },
            "history" => self.print_history(),
            _ => println!("Unknown /show option '{what}'. Type /? show for help"),
        }
    }

    fn print_history(&self) {
        if self.messages.is_empty() {
            println!("(no messages yet)");
        }
        for m in &self.messages {
            match m.role.as_str() {
                "user" => println!("{PROMPT}{}", m.content),
                _ => println!("{}\n", m.content),
            }
        }
    }

    fn save(&self, name: &str) {
        let path = match chat_path(name) {
            Ok(p) => p,
            Err(e) => return println!("{e}"),
        };
        let saved = SavedChat {
            model: self.model.config.name.clone(),
            system: self.system.clone(),
            think: self.think,
            parameters: Parameters::of(&self.args),
            messages: self.messages.clone(),
        };
        let written = (|| -> Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, serde_json::to_vec_pretty(&saved)?)?;
            Ok(())
        })();
        match written {
            Ok(()) => println!("Saved the conversation as '{name}' ({}).", path.display()),
            Err(e) => println!("Cannot save to {}: {e:#}", path.display()),
        }
    }

    fn load(&mut self, name: &str) {
        let path = match chat_path(name) {
            Ok(p) => p,
            Err(e) => return println!("{e}"),
        };
        let saved = std::fs::read(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "No saved conversation '{name}' (looked for {}).",
                        path.display()
                    )
                } else {
                    format!("Cannot read {}: {e}", path.display())
                }
            })
            .and_then(|b| {
                serde_json::from_slice::<SavedChat>(&b)
                    .map_err(|e| format!("{} is not a saved conversation: {e}", path.display()))
            });
        let saved = match saved {
            Ok(s) => s,
            Err(e) => return println!("{e}"),
        };
        let mut args = self.args.clone();
        saved.parameters.apply(&mut args);
        if let Err(e) = args.sampling().validate(self.model.config.n_vocab) {
            return println!("Cannot load '{name}': {e}");
        }
        if saved.model.is_some() && saved.model != self.model.config.name {
            println!(
                "(saved with {}; going on with {})",
                saved.model.as_deref().unwrap_or("another model"),
                self.model.config.name.as_deref().unwrap_or("this model")
            );
        }
        self.args = args;
        self.system = saved.system;
        self.think = saved.think;
        self.messages = saved.messages;
        self.left_out = 0;
        println!("Loaded '{name}': {} message(s).\n", self.messages.len());
        self.print_history();
    }
}

fn row(key: &str, value: &str) {
    println!("    {key:<18}{value}");
}

/// The first word of `s` and the rest, trimmed.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.split_once(char::is_whitespace) {
        Some((w, rest)) => (w, rest.trim()),
        None => (s, ""),
    }
}

fn help(topic: &str) {
    match topic {
        "set" => println!(
            "  /set parameter NAME VALUE   Set a sampling parameter:
      temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
      presence_penalty, frequency_penalty, seed, num_predict (-1: until the context
      is full), stop (one or more strings, separated by spaces)
  /set system MSG             Set the system message (empty: none; \"\"\" for several lines)
  /set think, /set nothink    Pass enable_thinking to the chat template
  /set verbose, /set quiet    Print timings after each answer, or not"
        ),
        "show" => println!(
            "  /show                 Model, parameters and system message
  /show info            The same
  /show parameters      The sampling parameters
  /show system          The system message
  /show template        The model's chat template
  /show history         The conversation so far"
        ),
        "shortcuts" => println!(
            "  Ctrl-A, Ctrl-E        Start, end of the line
  Alt-B, Alt-F          Word back, forward
  Ctrl-K, Ctrl-U        Delete to the end, to the start of the line
  Ctrl-W                Delete the word before the cursor
  Ctrl-L                Clear the screen
  Up, Down, Ctrl-R      Earlier inputs, search them
  Tab                   Complete a command
  Ctrl-C                Stop an answer; at the prompt, drop the line
  Ctrl-D                Quit (on an empty line)"
        ),
        _ => println!(
            "Commands:
  /set            Change a setting (/? set)
  /show           Show the model and the settings (/? show)
  /save NAME      Save the conversation and settings
  /load NAME      Load a saved conversation
  /clear          Start a new conversation (the settings stay)
  /bye            Quit (also /exit, /quit, Ctrl-D)
  /?, /help       This help; /? shortcuts for the keys

A message can span lines: start it with \"\"\" and end it with \"\"\".
Pasted text is one message."
        ),
    }
}

/// The sampling parameters `/set parameter` knows.
const PARAMETERS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "num_predict",
    "stop",
];

/// Sets one of [`PARAMETERS`] in `a`; the caller validates the result.
fn set_parameter(a: &mut RunArgs, name: &str, value: &str) -> Result<(), String> {
    fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("'{v}' is not a valid number here"))
    }
    match name {
        "temperature" => a.temp = num(value)?,
        "top_k" => a.top_k = num(value)?,
        "top_p" => a.top_p = num(value)?,
        "min_p" => a.min_p = num(value)?,
        "repeat_penalty" => a.repeat_penalty = num(value)?,
        "repeat_last_n" => a.repeat_last_n = num(value)?,
        "presence_penalty" => a.presence_penalty = num(value)?,
        "frequency_penalty" => a.frequency_penalty = num(value)?,
        "seed" => a.seed = Some(num(value)?),
        "num_predict" => {
            a.max_tokens = match value {
                "-1" => usize::MAX,
                v => num(v)?,
            }
        }
        "stop" => a.stop = value.split_whitespace().map(str::to_string).collect(),
        _ => {
            return Err(format!(
                "unknown parameter (known: {})",
                PARAMETERS.join(", ")
            ))
        }
    }
    Ok(())
}

/// The sampling settings of a saved conversation, by `/set parameter`'s names.
#[derive(Serialize, Deserialize)]
struct Parameters {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: usize,
    presence_penalty: f32,
    frequency_penalty: f32,
    seed: Option<u64>,
    /// Most tokens per answer; absent: until the context is full.
    num_predict: Option<usize>,
    stop: Vec<String>,
}

impl Parameters {
    fn of(a: &RunArgs) -> Parameters {
        Parameters {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: a.repeat_last_n,
            presence_penalty: a.presence_penalty,
            frequency_penalty: a.frequency_penalty,
            seed: a.seed,
            num_predict: (a.max_tokens != usize::MAX).then_some(a.max_tokens),
            stop: a.stop.clone(),
        }
    }

    fn apply(&self, a: &mut RunArgs) {
        a.temp = self.temperature;
        a.top_k = self.top_k;
        a.top_p = self.top_p;
        a.min_p = self.min_p;
        a.repeat_penalty = self.repeat_penalty;
        a.repeat_last_n = self.repeat_last_n;
        a.presence_penalty = self.presence_penalty;
        a.frequency_penalty = self.frequency_penalty;
        a.seed = self.seed;
        a.max_tokens = self.num_predict.unwrap_or(usize::MAX).max(1);
        a.stop = self.stop.clone();
    }

    /// Each parameter and its value, as `/show parameters` prints them.
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("temperature", self.temperature.to_string()),
            ("top_k", self.top_k.to_string()),
            ("top_p", self.top_p.to_string()),
            ("min_p", self.min_p.to_string()),
            ("repeat_penalty", self.repeat_penalty.to_string()),
            ("repeat_last_n", self.repeat_last_n.to_string()),
            ("presence_penalty", self.presence_penalty.to_string()),
            ("frequency_penalty", self.frequency_penalty.to_string()),
            (
                "seed",
                self.seed.map_or("(random)".to_string(), |s| s.to_string()),
            ),
            (
                "num_predict",
                self.num_predict.map_or("-1".to_string(), |n| n.to_string()),
            ),
            (
                "stop",
                if self.stop.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("{:?}", self.stop)
                },
            ),
        ]
    }
}

/// A conversation as `/save` writes it.
#[derive(Serialize, Deserialize)]
struct SavedChat {
    /// The model's `general.name`, to warn when another model loads it.
    model: Option<String>,
    system: Option<String>,
    #[serde(default)]
    think: Option<bool>,
    parameters: Parameters,
    messages: Vec<ChatMessage>,
}

/// Hearth's cache folder: `$XDG_CACHE_HOME/hearth`, else `~/.cache/hearth` (where the
/// models live by default).
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|c| c.join("hearth"))
}

/// The file of the saved conversation `name`: `chats/NAME.json` in the cache folder. A name
/// is letters, digits, `-`, `_` and `.`, so it cannot reach outside that folder.
fn chat_path(name: &str) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("Usage: /save NAME, /load NAME".into());
    }
    let ok = name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(format!(
            "'{name}' cannot name a conversation: use letters, digits, '-', '_' and '.'"
        ));
    }
    let dir = cache_dir().ok_or("no cache folder: set HOME or XDG_CACHE_HOME")?;
    Ok(dir.join("chats").join(format!("{name}.json")))
}

/// rustyline's helper: completes the commands, shows a placeholder on the empty prompt.
struct ChatHelper {
    placeholder: Option<&'static str>,
}

/// A hint that is only shown: the right arrow does not insert it.
struct Placeholder(&'static str);

impl Hint for Placeholder {
    fn display(&self) -> &str {
        self.0
    }
    fn completion(&self) -> Option<&str> {
        None
    }
}

impl Hinter for ChatHelper {
    type Hint = Placeholder;

    fn hint(&self, line: &str, _pos: usize, _ctx: &rustyline::Context<'_>) -> Option<Placeholder> {
        self.placeholder
            .filter(|_| line.is_empty())
            .map(Placeholder)
    }
}

impl Highlighter for ChatHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m")) // dim
    }
}

impl Completer for ChatHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let head = &line[..pos];
        if !head.starts_with('/') {
            return Ok((pos, Vec::new()));
        }
        let start = head.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let before: Vec<&str> = head[..start].split_whitespace().collect();
        let options: &[&str] = match before.as_slice() {
            [] => COMMANDS,
            ["/set"] => SET_OPTIONS,
            ["/set", "parameter"] => PARAMETERS,
            ["/show"] => SHOW_OPTIONS,
            ["/help" | "/?"] => HELP_TOPICS,
            _ => &[],
        };
        let word = &head[start..];
        Ok((
            start,
            options
                .iter()
                .filter(|o| o.starts_with(word))
                .map(|o| o.to_string())
                .collect(),
        ))
    }
}

impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_open_at_the_start_or_after_set_system() {
        assert_eq!(block_start("\"\"\""), Some(0));
        assert_eq!(block_start("  \"\"\"hello"), Some(2));
        assert_eq!(block_start("/set system \"\"\"be brief"), Some(12));
        assert_eq!(block_start("/set system be \"\"\"brief"), None);
        assert_eq!(block_start("/set system\"\"\""), None);
        assert_eq!(block_start("say \"\"\"hi\"\"\""), None);
    }

    #[test]
    fn words_split_once() {
        assert_eq!(
            split_word("  /set  parameter top_k 5 "),
            ("/set", "parameter top_k 5")
        );
        assert_eq!(split_word("/bye"), ("/bye", ""));
        assert_eq!(split_word(""), ("", ""));
    }

    #[test]
    fn chat_names_stay_in_their_folder() {
        assert!(chat_path("ok-name_1.v2").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(chat_path(bad).is_err(), "{bad}");
        }
    }
}
