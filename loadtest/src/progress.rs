//! The live progress line on stderr: while connections open, how many are open of the target;
//! while the run goes, messages offered and delivered per second and errors. On a terminal the
//! line is rewritten in place; otherwise (a log, CI) it is one line per second.

use std::io::{IsTerminal, Write};

/// What every worker last said, and how to show it.
pub struct Progress {
    tty: bool,
    target: u64,
    /// Per worker: (opened, failed) while connecting; (delivered, sent, errors) while running.
    opened: Vec<(u64, u64)>,
    running: Vec<(u64, u64, u64)>,
    /// Totals at the previous line, for rates.
    last: (u64, u64),
    /// Whether the current line is unfinished (a terminal's line in place).
    open_line: bool,
}

impl Progress {
    pub fn new(workers: usize, target: u64) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            target,
            opened: vec![(0, 0); workers],
            running: vec![(0, 0, 0); workers],
            last: (0, 0),
            open_line: false,
        }
    }

    pub fn connecting(&mut self, worker: usize, opened: u64, failed: u64) {
        self.opened[worker] = (opened, failed);
    }

    pub fn running(&mut self, worker: usize, delivered: u64, sent: u64, errors: u64) {
        self.running[worker] = (delivered, sent, errors);
    }

    /// The line while connections open.
    pub fn show_connecting(&mut self, secs: f64) {
        let (o, f) = self
            .opened
            .iter()
            .fold((0, 0), |(a, b), (o, f)| (a + o, b + f));
        let line = format!(
            "connecting {:>6.0} s  {}/{} open  {} failed",
            secs,
            grouped(o),
            grouped(self.target),
            grouped(f)
        );
        self.show(&line);
    }

    /// The line while the run goes: one second's rates since the last line.
    pub fn show_running(&mut self, secs: f64, duration: u64) {
        let (d, s, e) = self
            .running
            .iter()
            .fold((0, 0, 0), |(a, b, c), (d, s, e)| (a + d, b + s, c + e));
        let line = format!(
            "running {:>4.0}/{duration} s  offered {}/s  delivered {}/s  errors {}",
            secs,
            grouped(s - self.last.1.min(s)),
            grouped(d - self.last.0.min(d)),
            grouped(e)
        );
        self.last = (d, s);
        self.show(&line);
    }

    /// A line of its own (what the run does now), after the progress line.
    pub fn say(&mut self, what: &str) {
        self.finish();
        eprintln!("{what}");
    }

    /// End the line in place, if one is open.
    pub fn finish(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }

    fn show(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.open_line = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
    }
}
