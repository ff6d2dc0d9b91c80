//! The process's log lines: the filter the user sets (`--log-filter`), as text or JSON, and a
//! limit on warnings that repeat.
//!
//! Ballista's executor retries an unreachable scheduler twice a second and warns each time;
//! a scheduler down for an hour would write 7,200 identical lines. [`RepeatLimit`] lets one
//! warning (or error) of each Ballista call site through per [`REPEAT_WINDOW`] and drops the
//! rest; its other lines (the `Finished task` lines `benches/scaling.py` reads) and Strata's
//! own are never dropped.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How long a repeating Ballista warning stays quiet after it was written.
pub(crate) const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// Writes log lines to stderr, filtered by `filter` (an `EnvFilter` directive), as JSON lines
/// or as text (coloured only on a terminal).
pub(crate) fn init(filter: &str, json: bool) {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match json {
        // The fields of the enclosing spans (the statement's query_id) are flattened into
        // each line, as log pipelines (Loki, Datadog, Vector) index them.
        true => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
        false => layer.with_ansi(std::io::stderr().is_terminal()).boxed(),
    };
    tracing_subscriber::registry()
        .with(
            layer
                .with_filter(EnvFilter::new(filter))
                .with_filter(RepeatLimit::new(REPEAT_WINDOW)),
        )
        .init();
}

/// Lets one warning or error of each Ballista call site through per window.
pub(crate) struct RepeatLimit {
    window: Duration,
    /// When each site (target, file and line) last wrote.
    written: Mutex<HashMap<String, Instant>>,
}

impl RepeatLimit {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            written: Mutex::new(HashMap::new()),
        }
    }

    fn limited(metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN && metadata.target().starts_with("ballista")
    }
}

impl<S> Filter<S> for RepeatLimit {
    /// Every call site is enabled; events are limited as they happen ([`Filter::event_enabled`]
    /// is asked once per event, `enabled` may be asked more than once).
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        // Ballista logs through the `log` crate: its records arrive as events of one call site
        // per level, their own target and line in the normalized metadata.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if !Self::limited(metadata) {
            return true;
        }
        let site = format!(
            "{}:{}:{}",
            metadata.target(),
            metadata.file().unwrap_or_default(),
            metadata.line().unwrap_or_default()
        );
        let now = Instant::now();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.get(&site) {
            Some(at) if now.duration_since(*at) < self.window => false,
            _ => {
                // Sites are lines of code: the map holds at most one entry for each.
                written.insert(site, now);
                true
            }
        }
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }
}
