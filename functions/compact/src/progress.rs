//! Progress bars on a terminal (indicatif) for the long steps of a pass: one bar
//! per group being merged, per block being downsampled, and for retention and
//! deletion. Shown only when stderr is a terminal; logs are unaffected.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::hooks::Progress;

/// indicatif bars, one per running task.
#[derive(Debug)]
pub struct TerminalProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<u64, ProgressBar>>,
}

impl TerminalProgress {
    /// Bars drawn on stderr, or `None` when stderr is not a terminal.
    pub fn if_tty() -> Option<Arc<dyn Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(
            TerminalProgress::new(ProgressDrawTarget::stderr()),
        ))
    }

    pub fn new(target: ProgressDrawTarget) -> Self {
        TerminalProgress {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner} {msg:50!} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }
}

impl Progress for TerminalProgress {
    fn begin(&self, key: u64, what: &str, total: u64) {
        let pb = self.multi.add(ProgressBar::new(total));
        pb.set_style(Self::style());
        pb.set_message(what.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(key, pb);
        }
    }

    fn set(&self, key: u64, done: u64, total: u64) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(pb) = bars.get(&key) {
                if total > 0 && pb.length() != Some(total) {
                    pb.set_length(total);
                }
                pb.set_position(done);
            }
        }
    }

    fn end(&self, key: u64) {
        let pb = self.bars.lock().ok().and_then(|mut b| b.remove(&key));
        if let Some(pb) = pb {
            pb.finish_and_clear();
            self.multi.remove(&pb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_follow_tasks() {
        let p = TerminalProgress::new(ProgressDrawTarget::hidden());
        p.begin(1, "merging", 0);
        p.set(1, 5, 10);
        {
            let bars = p.bars.lock().unwrap();
            assert_eq!(bars[&1].length(), Some(10));
            assert_eq!(bars[&1].position(), 5);
        }
        p.end(1);
        assert!(p.bars.lock().unwrap().is_empty());
        // Unknown keys are ignored.
        p.set(7, 1, 1);
        p.end(7);
    }
}
