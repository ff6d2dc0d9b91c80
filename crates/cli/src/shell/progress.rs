//! The progress line the shell draws on stderr while a statement runs longer than a second:
//! a bar of files and bytes for `COPY INTO`, rows and bytes scanned so far for queries,
//! `INSERT ... SELECT` and `REFRESH`, rows received from a server. It is cleared before the
//! result is printed, and not drawn at all when stderr is not a terminal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_query::{Progress, ProgressFigures};

use crate::render::group_digits;

/// How long a statement runs before its progress is shown.
const QUIET: Duration = Duration::from_secs(1);

/// Clears the line when the statement ends (its future, and this with it, is dropped).
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Draws progress until dropped. `progress` follows a local statement (none on a server),
/// `received` counts the rows the shell got back.
pub(super) async fn show(progress: Option<Progress>, received: Arc<AtomicU64>) {
    tokio::time::sleep(QUIET).await;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let _clear = ClearOnDrop(bar.clone());
    let spinner =
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("template parses");
    let loading = ProgressStyle::with_template(
        "{spinner} [{elapsed}] [{bar:30}] {bytes}/{total_bytes} {msg}",
    )
    .expect("template parses")
    .progress_chars("=> ");
    bar.set_style(spinner.clone());
    let mut is_load = false;
    loop {
        let figures = progress.as_ref().map(Progress::figures).unwrap_or_default();
        if figures.files_to_load > 0 {
            if !is_load {
                bar.set_style(loading.clone());
                is_load = true;
            }
            bar.set_length(figures.bytes_to_load);
            bar.set_position(figures.bytes_loaded);
        }
        bar.set_message(message(&figures, received.load(Ordering::Relaxed)));
        bar.tick();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The figures that say how far a statement got.
fn message(figures: &ProgressFigures, received: u64) -> String {
    if figures.files_to_load > 0 {
        return format!(
            "{}/{} files, {} rows loaded",
            figures.files_loaded,
            figures.files_to_load,
            group_digits(figures.rows_loaded as usize)
        );
    }
    let mut parts = Vec::new();
    if figures.rows_scanned > 0 {
        parts.push(format!(
            "{} rows scanned",
            group_digits(figures.rows_scanned as usize)
        ));
    }
    if figures.bytes_scanned > 0 {
        parts.push(format!("{} read", HumanBytes(figures.bytes_scanned)));
    }
    if received > 0 {
        parts.push(format!("{} rows received", group_digits(received as usize)));
    }
    if parts.is_empty() {
        "running (Ctrl-C cancels)".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_how_far_a_statement_got() {
        let load = ProgressFigures {
            files_to_load: 10,
            files_loaded: 3,
            rows_loaded: 1_234_567,
            ..ProgressFigures::default()
        };
        assert_eq!(message(&load, 0), "3/10 files, 1,234,567 rows loaded");
        let scan = ProgressFigures {
            rows_scanned: 6_001_215,
            bytes_scanned: 3 << 20,
            ..ProgressFigures::default()
        };
        assert_eq!(
            message(&scan, 40),
            "6,001,215 rows scanned, 3.00 MiB read, 40 rows received"
        );
        assert_eq!(
            message(&ProgressFigures::default(), 0),
            "running (Ctrl-C cancels)"
        );
    }
}
