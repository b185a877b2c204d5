//! `cmekctl onboard`'s progress: a bar redrawn in place on a terminal, a
//! plain line every [`PLAIN_EVERY`] when stderr is not one (a CI log, a
//! file), nothing with `--json` (stdout is then for the summary alone).

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How often a plain progress line is written when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Redrawn in place on stderr.
    Bar,
    /// A line now and then on stderr.
    Lines,
    Silent,
}

impl Style {
    pub fn detect(json_out: bool) -> Self {
        if json_out {
            Self::Silent
        } else if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// Where the batch stands.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub total: usize,
    pub attached: usize,
    pub already: usize,
    pub failed: usize,
    pub in_flight: usize,
    /// Admin API requests a minute the starts are paced to.
    pub rate_rpm: f64,
    /// 429s the executions met so far.
    pub rate_limited: u64,
    pub elapsed: Duration,
}

impl Snapshot {
    pub fn done(&self) -> usize {
        self.attached + self.already + self.failed
    }

    /// Time left at the pace of the workspaces done so far (already
    /// attached ones cost nothing, so they do not count towards the pace).
    pub fn eta(&self) -> Option<Duration> {
        let worked = self.attached + self.failed;
        let left = self.total.saturating_sub(self.done());
        if worked == 0 || self.elapsed.is_zero() {
            return None;
        }
        Some(self.elapsed.mul_f64(left as f64 / worked as f64))
    }

    /// One line, `width` characters of bar.
    pub fn render(&self, width: usize) -> String {
        let share = if self.total == 0 {
            1.0
        } else {
            self.done() as f64 / self.total as f64
        };
        let filled = ((share * width as f64).round() as usize).min(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        format!(
            "[{bar}] {}/{} · {} attached · {} failed · {} in flight · {:.0} req/min · {} × 429 · ETA {}",
            self.done(),
            self.total,
            self.attached + self.already,
            self.failed,
            self.in_flight,
            self.rate_rpm,
            self.rate_limited,
            self.eta().map_or_else(|| "–".to_owned(), clock)
        )
    }
}

/// `1h02m03s`, `12m03s`, `45s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[derive(Debug)]
pub struct Progress {
    style: Style,
    last_plain: Option<Duration>,
    drawn: bool,
}

impl Progress {
    pub fn new(style: Style) -> Self {
        Self {
            style,
            last_plain: None,
            drawn: false,
        }
    }

    /// Show `s` (a bar now; a line if one is due).
    pub fn show(&mut self, s: &Snapshot) {
        let mut err = std::io::stderr().lock();
        match self.style {
            Style::Silent => {}
            Style::Bar => {
                let _ = write!(err, "\r\x1b[2K{}", s.render(30));
                let _ = err.flush();
                self.drawn = true;
            }
            Style::Lines => {
                if self.last_plain.is_none_or(|t| s.elapsed >= t + PLAIN_EVERY) {
                    let _ = writeln!(err, "progress {}", s.render(20));
                    self.last_plain = Some(s.elapsed);
                }
            }
        }
    }

    /// Print a line of output above the bar.
    pub fn println(&mut self, line: &str) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        println!("{line}");
    }

    /// The last word: the bar's final state on its own line.
    pub fn finish(&mut self, s: &Snapshot) {
        match self.style {
            Style::Silent => {}
            Style::Bar => {
                let _ = writeln!(std::io::stderr().lock(), "\r\x1b[2K{}", s.render(30));
            }
            Style::Lines => {
                let _ = writeln!(std::io::stderr().lock(), "progress {}", s.render(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_counts_rate_and_eta() {
        let s = Snapshot {
            total: 10,
            attached: 3,
            already: 1,
            failed: 1,
            in_flight: 2,
            rate_rpm: 287.4,
            rate_limited: 4,
            elapsed: Duration::from_secs(40),
        };
        // 4 worked in 40 s, 5 left: 50 s.
        assert_eq!(s.eta(), Some(Duration::from_secs(50)));
        assert_eq!(
            s.render(10),
            "[#####-----] 5/10 · 4 attached · 1 failed · 2 in flight · 287 req/min · 4 × 429 · ETA 50s"
        );
        assert_eq!(Snapshot::default().eta(), None);
        assert!(Snapshot::default().render(4).starts_with("[####] 0/0"));
    }

    #[test]
    fn clock_reads_like_a_clock() {
        assert_eq!(clock(Duration::from_secs(45)), "45s");
        assert_eq!(clock(Duration::from_secs(723)), "12m03s");
        assert_eq!(clock(Duration::from_secs(3723)), "1h02m03s");
    }
}
