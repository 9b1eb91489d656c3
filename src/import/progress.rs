//! The progress bar on standard error, shown only when it is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Rows between two updates of the bar.
pub(crate) const EVERY: u64 = 4096;

/// A progress bar, or nothing (tests, CI, output to a file).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// No bar.
    pub(crate) fn hidden() -> Progress {
        Progress { bar: None }
    }

    /// A bar on standard error when it is a terminal.
    pub(crate) fn on_terminal() -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        Progress { bar: Some(bar) }
    }

    /// Starts the reading phase: `total` bytes or rows.
    pub(crate) fn start(&self, bytes: bool, total: u64) {
        if let Some(bar) = &self.bar {
            let template = if bytes {
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})"
            } else {
                "{msg} [{bar:40}] {pos}/{len} rows ({eta})"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_length(total);
            bar.set_message("checking rows");
        }
    }

    /// Work done so far.
    pub(crate) fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Starts the writing phase, whose length is not known.
    pub(crate) fn writing(&self) {
        if let Some(bar) = &self.bar {
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message("writing to the journal");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
