//! `hearth run`'s interactive chat, driven through a pseudo-terminal as a person would type:
//! line editing is rustyline's, so only a real terminal exercises it (raw mode, bracketed
//! paste, Ctrl-C as a key at the prompt and as SIGINT while an answer streams).
//!
//! Each test runs the default model greedily with short answers, with HOME in a temporary
//! folder so that the history and saved conversations stay out of the real cache.

#![cfg(unix)]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::model_path;

/// What the chat shows on an empty prompt, and only there: the sign that it waits for input.
const READY: &str = "Send a message (/? for help)";
const WAIT: Duration = Duration::from_secs(120);

/// Bytes the child wrote to the terminal, and whether it has closed it.
type Screen = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// `hearth run` on a pseudo-terminal.
struct Chat {
    master: File,
    child: Child,
    screen: Screen,
    /// How far into the cleaned output `expect` has read.
    pos: usize,
}

impl Chat {
    /// Starts `hearth run -m MODEL --temp 0 -n 16 -t 1 EXTRA…` with HOME at `home` and
    /// waits for its first prompt.
    fn start(home: &Path, extra: &[&str]) -> Chat {
        let model = model_path();
        let mut args = vec![
            "run".to_string(),
            "-m".into(),
            model.display().to_string(),
            "--temp".into(),
            "0".into(),
            "-n".into(),
            "16".into(),
            "-t".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (master, slave) = open_pty();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.args(&args)
            .env("HOME", home)
            .env_remove("XDG_CACHE_HOME")
            .env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own, with the terminal as its controlling terminal, so
                // that Ctrl-C on the terminal signals it.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start hearth");
        drop(cmd); // closes this side's copies of the terminal, so reads end when it exits

        let screen: Screen = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let mut reader = master.try_clone().unwrap();
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0); // EIO once the child is gone
                let (lock, cv) = &*s;
                let mut g = lock.lock().unwrap();
                if n == 0 {
                    g.1 = true;
                    cv.notify_all();
                    return;
                }
                g.0.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        let mut chat = Chat {
            master,
            child,
            screen,
            pos: 0,
        };
        chat.expect(READY);
        chat
    }

    /// Waits until `needle` appears in the output after what was read so far; returns the
    /// text before it and reads past it. Panics, showing the output, after a while.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.screen;
        let mut g = lock.lock().unwrap();
        loop {
            let text = clean(&g.0);
            if let Some(i) = text[self.pos..].find(needle) {
                let before = text[self.pos..self.pos + i].to_string();
                self.pos += i + needle.len();
                return before;
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                panic!(
                    "{needle:?} did not come ({}); the output after the last match:\n{}",
                    if g.1 {
                        "the terminal closed"
                    } else {
                        "timed out"
                    },
                    &text[self.pos..]
                );
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// The output after what was read so far, waiting at most `d`, without reading past it.
    fn peek_after(&self, d: Duration) -> String {
        std::thread::sleep(d);
        let g = self.screen.0.lock().unwrap();
        clean(&g.0)[self.pos..].to_string()
    }

    fn send(&mut self, bytes: &str) {
        self.master.write_all(bytes.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Types `line` and Enter at the prompt, and returns what the chat printed until its
    /// next prompt (the line's own echo left out).
    fn say(&mut self, line: &str) -> String {
        self.send(line);
        self.send("\r");
        self.expect("\n"); // the end of the echoed line
        self.until_prompt()
    }

    /// What comes until the next empty prompt, without the prompt.
    fn until_prompt(&mut self) -> String {
        let out = self.expect(READY);
        out.strip_suffix(">>> ").unwrap_or(&out).to_string()
    }

    /// Waits for the process to end.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "hearth did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new pseudo-terminal, 200 columns wide (no wrapping in these tests): master, slave.
fn open_pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; `name` is
    // NUL-terminated by ptsname_r.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = File::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 256];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .unwrap()
            .to_string();
        let ws = libc::winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws), 0);
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        (master, slave)
    }
}

/// The terminal output as text: escape sequences (colours, cursor moves, bracketed paste
/// on and off) and carriage returns taken out.
fn clean(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.next() {
                Some('[') => {
                    // CSI: parameters, then one final byte in @..~
                    for c in it.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \
                    while let Some(c) = it.next() {
                        if c == '\x07' || (c == '\x1b' && it.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_question_gets_an_answer_and_ctrl_d_quits() {
    let home = home();
    let mut chat = Chat::start(home.path(), &[]);
    let answer = chat.say("What is the capital of France?");
    assert!(answer.contains("Paris"), "answer: {answer:?}");
    chat.send("\x04");
    let status = chat.wait();
    assert!(status.success(), "exit status {status}");
    // The input went into the history, in the cache folder under HOME.
    let history = std::fs::read_to_string(home.path().join(".cache/hearth/history")).unwrap();
    assert!(
        history.contains("What is the capital of France?"),
        "{history}"
    );
}

#[test]
fn set_parameter_shows_in_show_parameters() {
    let home = home();
    let mut chat = Chat::start(home.path(), &[]);
    let before = chat.say("/show parameters");
    assert!(before.contains("temperature       0\n"), "{before}");
    let out = chat.say("/set parameter temperature 0.3");
    assert!(
        out.contains("Set parameter 'temperature' to '0.3'"),
        "{out}"
    );
    let out = chat.say("/set parameter num_predict 7");
    assert!(out.contains("Set parameter 'num_predict' to '7'"), "{out}");
    let shown = chat.say("/show parameters");
    assert!(shown.contains("temperature       0.3\n"), "{shown}");
    assert!(shown.contains("num_predict       7\n"), "{shown}");
    // A bad value is refused and changes nothing.
    let out = chat.say("/set parameter top_p 7");
    assert!(out.contains("Cannot set 'top_p'"), "{out}");
    let out = chat.say("/set parameter nonsense 1");
    assert!(out.contains("unknown parameter"), "{out}");
    let info = chat.say("/show");
    assert!(info.contains("top_p             0.95"), "{info}");
    assert!(info.contains("context length"), "{info}");
    assert!(info.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{info}");
    let out = chat.say("/set system Answer in French.");
    assert!(out.contains("Set the system message."), "{out}");
    assert_eq!(chat.say("/show system").trim(), "Answer in French.");
    let template = chat.say("/show template");
    assert!(template.contains("im_start"), "{template}");
    let help = chat.say("/?");
    assert!(
        help.contains("/set") && help.contains("/load NAME"),
        "{help}"
    );
    chat.send("\x04");
    assert!(chat.wait().success());
}

#[test]
fn unknown_command_gets_a_hint_and_does_not_reach_the_model() {
    let home = home();
    let mut chat = Chat::start(home.path(), &[]);
    let out = chat.say("/foo bar");
    assert_eq!(out.trim(), "Unknown command '/foo'. Type /? for help");
    // Nothing was added to the conversation either.
    assert_eq!(chat.say("/show history").trim(), "(no messages yet)");
    // Ctrl-C at the prompt drops the line: nothing is sent.
    chat.send("Tell me about cats");
    chat.send("\x03");
    chat.until_prompt();
    assert_eq!(chat.say("/show history").trim(), "(no messages yet)");
    chat.send("/bye\r");
    assert!(chat.wait().success());
}

#[test]
fn quoted_block_and_pasted_text_are_one_message_each() {
    let home = home();
    let mut chat = Chat::start(home.path(), &[]);
    chat.send("\"\"\"\r");
    chat.expect("... ");
    chat.send("Name a colour.\r");
    chat.expect("... ");
    chat.send("Then name a fruit.\r");
    chat.expect("... ");
    chat.send("\"\"\"\r");
    chat.expect("\"\"\"\n");
    let answer = chat.until_prompt();
    assert!(!answer.trim().is_empty(), "no answer");
    assert!(!answer.contains("... "), "{answer}");

    // A paste arrives between the terminal's bracketed-paste marks; its newlines stay in
    // the line, and Enter sends it all.
    chat.send("\x1b[200~What is 2+2?\nAnswer with a number.\x1b[201~");
    let answer = chat.say("");
    assert!(!answer.trim().is_empty(), "no answer");

    let out = chat.say("/save blocks");
    assert!(out.contains("Saved"), "{out}");
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join(".cache/hearth/chats/blocks.json")).unwrap(),
    )
    .unwrap();
    let messages = saved["messages"].as_array().unwrap();
    let turns: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(turns.len(), 4, "{turns:?}");
    assert_eq!(turns[0], ("user", "Name a colour.\nThen name a fruit."));
    assert_eq!(turns[1].0, "assistant");
    assert_eq!(turns[2], ("user", "What is 2+2?\nAnswer with a number."));
    assert_eq!(turns[3].0, "assistant");
    chat.send("\x04");
    assert!(chat.wait().success());
}

#[test]
fn ctrl_c_stops_a_long_answer_and_the_chat_goes_on() {
    let home = home();
    // Past the end-of-generation token too, so that only Ctrl-C can end the answer soon.
    let mut chat = Chat::start(home.path(), &["--ignore-eos"]);
    chat.say("/set parameter num_predict 2000");
    chat.send("Tell me a very long story about a dragon and a knight.\r");
    chat.expect("\n");
    // Let it stream a while, then press Ctrl-C.
    let deadline = Instant::now() + WAIT;
    while chat.peek_after(Duration::from_millis(100)).len() < 80 {
        assert!(Instant::now() < deadline, "the answer did not stream");
    }
    let t = Instant::now();
    chat.send("\x03");
    let partial = chat.until_prompt();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the prompt took {:?} to come back",
        t.elapsed()
    );
    assert!(partial.len() >= 80, "{partial:?}");
    // The answer stopped: nothing more streams after the prompt.
    let after = chat.peek_after(Duration::from_secs(1));
    assert!(after.trim().is_empty(), "still streaming: {after:?}");

    // The chat goes on, the stopped answer kept in the conversation.
    chat.say("/set parameter num_predict 16");
    let answer = chat.say("What is the capital of France?");
    assert!(!answer.trim().is_empty(), "no answer after Ctrl-C");
    let history = chat.say("/show history");
    let start: String = partial.trim().chars().take(40).collect();
    assert!(history.contains(&start), "{start:?} not in {history}");
    chat.send("\x04");
    assert!(chat.wait().success());
}

#[test]
fn save_clear_load_restores_the_conversation() {
    let home = home();
    let mut chat = Chat::start(home.path(), &[]);
    let answer = chat.say("What is the capital of France?");
    chat.say("/set parameter temperature 0.25");
    chat.say("/set system Be brief.");
    let out = chat.say("/save trip");
    assert!(out.contains("Saved the conversation as 'trip'"), "{out}");
    assert!(home.path().join(".cache/hearth/chats/trip.json").is_file());

    let out = chat.say("/clear");
    assert!(out.contains("Cleared"), "{out}");
    assert_eq!(chat.say("/show history").trim(), "(no messages yet)");
    chat.say("/set parameter temperature 0.9");
    chat.say("/set system");

    let out = chat.say("/load trip");
    assert!(out.contains("Loaded 'trip': 2 message(s)."), "{out}");
    assert!(out.contains(">>> What is the capital of France?"), "{out}");
    assert!(out.contains(answer.trim()), "{out}");
    let params = chat.say("/show parameters");
    assert!(params.contains("temperature       0.25\n"), "{params}");
    assert_eq!(chat.say("/show system").trim(), "Be brief.");
    let history = chat.say("/show history");
    assert!(history.contains(answer.trim()), "{history}");

    // A name cannot leave the folder, and a missing one says so.
    let out = chat.say("/load ../../x");
    assert!(out.contains("cannot name a conversation"), "{out}");
    let out = chat.say("/load nothere");
    assert!(out.contains("No saved conversation 'nothere'"), "{out}");
    chat.send("/exit\r");
    assert!(chat.wait().success());
}
