//! A download's progress on stderr: a bar redrawn in place on a terminal (size, speed,
//! ETA), plain lines elsewhere.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use hearth_server::{PullEvent, PullSink};

/// A progress bar on stderr: redrawn in place on a terminal, otherwise a line per tenth.
pub struct Progress {
    label: String,
    total: Option<u64>,
    start_at: u64,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
    tty: bool,
    /// The next tenth (or, size unknown, the next 100 MB) a plain line is printed at.
    next_mark: u64,
    /// Where progress events also go (`/api/pull`'s stream), with the file's name and
    /// digest, and when the last one went.
    sink: Option<(PullSink, String, String)>,
    last_sent: Option<Instant>,
}

impl Progress {
    pub fn new(label: &str, total: Option<u64>, start_at: u64) -> Progress {
        let mut p = Progress {
            label: label.to_string(),
            total,
            start_at,
            done: start_at,
            started: Instant::now(),
            last_draw: None,
            tty: std::io::stderr().is_terminal(),
            next_mark: 0,
            sink: None,
            last_sent: None,
        };
        p.next_mark = p.mark(start_at) + 1;
        if start_at > 0 {
            eprintln!("{}: resuming at {}", p.label, human(start_at));
        }
        p
    }

    /// Tenths done, or hundreds of MB when the size is unknown.
    fn mark(&self, done: u64) -> u64 {
        match self.total {
            Some(t) if t > 0 => done.saturating_mul(10) / t,
            _ => done / 100_000_000,
        }
    }

    /// Also reports to `sink` (a few times a second, and at the end), as `file` with
    /// `digest`.
    pub fn report_to(mut self, sink: Option<PullSink>, file: &str, digest: String) -> Progress {
        self.sink = sink.map(|s| (s, file.to_string(), digest));
        self.send(true);
        self
    }

    fn send(&mut self, now: bool) {
        let Some((sink, file, digest)) = &self.sink else {
            return;
        };
        if !now
            && self
                .last_sent
                .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.last_sent = Some(Instant::now());
        sink(PullEvent::Downloading {
            file: file.clone(),
            digest: digest.clone(),
            total: self.total.unwrap_or(0),
            completed: self.done,
        });
    }

    pub fn update(&mut self, done: u64) {
        self.done = done;
        self.send(false);
        if self.tty {
            if self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            {
                self.last_draw = Some(Instant::now());
                eprint!("\r{}\x1b[K", self.line());
            }
        } else if self.mark(done) >= self.next_mark {
            self.next_mark = self.mark(done) + 1;
            eprintln!("{}", self.line());
        }
    }

    pub fn finish(&mut self) {
        self.send(true);
        if self.tty {
            eprintln!("\r{}\x1b[K", self.line());
        } else if self.done != self.start_at && self.mark(self.done) + 1 != self.next_mark {
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let speed = if secs > 0.0 {
            (self.done - self.start_at) as f64 / secs
        } else {
            0.0
        };
        let speed_text = format!("{}/s", human(speed as u64));
        match self.total {
            Some(t) if t > 0 => {
                let frac = (self.done as f64 / t as f64).min(1.0);
                let eta = if speed > 0.0 && self.done < t {
                    let s = ((t - self.done) as f64 / speed) as u64;
                    format!("ETA {}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                } else {
                    String::new()
                };
                if self.tty {
                    let filled = (frac * 30.0) as usize;
                    format!(
                        "{} {:3.0}% [{}{}] {} / {}  {speed_text}  {eta}",
                        self.label,
                        frac * 100.0,
                        "#".repeat(filled),
                        " ".repeat(30 - filled),
                        human(self.done),
                        human(t)
                    )
                } else {
                    format!(
                        "{}: {:3.0}% ({} of {}, {speed_text}{}{eta})",
                        self.label,
                        frac * 100.0,
                        human(self.done),
                        human(t),
                        if eta.is_empty() { "" } else { ", " }
                    )
                }
            }
            _ => format!("{}: {} ({speed_text})", self.label, human(self.done)),
        }
    }
}

/// Bytes for people: `512 B`, `98.4 MB`, `4.92 GB`.
pub fn human(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{n} B")
    }
}
