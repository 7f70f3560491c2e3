//! The progress of a training run on the terminal: a bar with the rate, the ETA and
//! the latest losses on a terminal (indicatif), a plain line every 30 seconds
//! otherwise (a log file, a scheduler's output).

use std::io::IsTerminal;
use std::time::Instant;

use crate::output::run_files::LogWindow;

/// A progress bar on a terminal; plain lines every 30 seconds otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    per_epoch: u64,
    total: u64,
}

impl Progress {
    pub fn new(total: u64, done: u64, per_epoch: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} steps, {per_sec}, ETA {eta} | {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(done);
            bar
        });
        Progress { bar, last_line: Instant::now(), per_epoch, total }
    }

    pub fn tick(&mut self, step: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
        }
    }

    pub fn update(&mut self, step: u64, epoch: usize, w: &LogWindow) {
        let msg = format!(
            "{:.0} img/s | d {:.3} g {:.3} info {:.3} | D(x) {:.2} D(G(z)) {:.2}",
            w.images_per_s(),
            w.mean(w.d_loss),
            w.mean(w.g_loss),
            w.mean(w.info_loss),
            w.mean(w.d_real),
            w.mean(w.d_fake)
        );
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("epoch {epoch}"));
                bar.set_position(step);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed().as_secs() >= 30 || step == self.total => {
                let left = self.total - step;
                let eta = left as f64 * w.seconds / w.steps.max(1) as f64;
                eprintln!(
                    "epoch {epoch} step {step}/{} ({}/{} in epoch) ETA {:.0}s | {msg}",
                    self.total,
                    (step - 1) % self.per_epoch + 1,
                    self.per_epoch,
                    eta
                );
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    pub fn message(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
