//! How `up` shows its progress: one of clusterkit-core's reporters
//! ([`clusterkit_core::reporters`]), picked by the command line.

use clusterkit_core::engine::{Event, Lines, Reporter};
use clusterkit_core::reporters::{JsonLines, LiveTable};

/// The reporter `up` uses: JSON, the live table, or log lines.
pub enum Progress {
    /// `--json`.
    Json(JsonLines),
    /// A terminal.
    Live(LiveTable),
    /// Anything else.
    Lines(Lines),
}

impl Progress {
    /// Draws the last frame, if live; gives the JSON stream back for its
    /// last event.
    pub fn finish(self) -> Option<JsonLines> {
        match self {
            Progress::Live(l) => {
                l.finish();
                None
            }
            Progress::Json(j) => Some(j),
            Progress::Lines(_) => None,
        }
    }
}

impl Reporter for Progress {
    fn event(&self, e: &Event) {
        match self {
            Progress::Json(j) => j.event(e),
            Progress::Live(l) => l.event(e),
            Progress::Lines(l) => l.event(e),
        }
    }
}
