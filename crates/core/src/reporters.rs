//! Ready-made [`Reporter`]s of the engine's events, beside [`Lines`]: JSON
//! lines for tools ([`JsonLines`]), a live table of nodes and phases for a
//! terminal ([`LiveTable`], drawn from a [`Table`] an embedder can render
//! elsewhere), and an operation's notices alone ([`Notices`]). What
//! `clusterkit up` shows comes from these.
//!
//! The table is drawn by hand (cursor up, clear, redraw): progress-bar crates
//! such as indicatif draw bars and spinners, not a grid whose cells change.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(doc)]
use crate::engine::Lines;
use crate::engine::{Event, Reporter};

/// JSON events on stdout, one per line, each with `t` (seconds since start).
pub struct JsonLines {
    start: Instant,
}

impl JsonLines {
    /// Starts the clock.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// The last event: `{"event":"done","changed":..,"seconds":..,"summary":..}`.
    pub fn done(&self, changed: bool, summary: &str) {
        println!(
            "{}",
            serde_json::json!({"event": "done", "changed": changed, "seconds": self.start.elapsed().as_secs_f64(), "summary": summary})
        );
    }
}

impl Reporter for JsonLines {
    fn event(&self, e: &Event) {
        if let Event::Notice { .. } = e {
            // Not part of the run's stream of events: said on stderr.
            return Notices.event(e);
        }
        let mut v = serde_json::to_value(e).unwrap_or_default();
        v["t"] = serde_json::json!((self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        println!("{v}");
    }
}

/// A cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Not started.
    Waiting,
    /// Running.
    Running,
    /// Done, nothing changed on this node.
    Unchanged,
    /// Done, something changed on this node.
    Changed,
    /// The phase failed.
    Failed,
}

impl Cell {
    fn mark(self) -> &'static str {
        match self {
            Cell::Waiting => "·",
            Cell::Running => "▸",
            Cell::Unchanged => "✓",
            Cell::Changed => "●",
            Cell::Failed => "✗",
        }
    }
}

/// What the table shows.
#[derive(Debug, Clone)]
pub struct Table {
    /// The phases, in order.
    pub phases: Vec<&'static str>,
    /// Per node: one cell per phase, and its last message.
    pub rows: BTreeMap<String, (Vec<Cell>, String)>,
    /// The last message about the cluster as a whole.
    pub cluster: String,
    /// Warnings and errors, kept below the table.
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table for `nodes` and `phases`.
    pub fn new(nodes: &[String], phases: Vec<&'static str>) -> Self {
        let rows = nodes
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    (vec![Cell::Waiting; phases.len()], String::new()),
                )
            })
            .collect();
        Self {
            phases,
            rows,
            cluster: String::new(),
            notes: Vec::new(),
        }
    }

    /// Takes an event in.
    pub fn apply(&mut self, e: &Event) {
        let col = |p: &str| self.phases.iter().position(|x| *x == p);
        match e {
            Event::PhaseStarted { phase } => {
                if let Some(c) = col(phase) {
                    for (cells, _) in self.rows.values_mut() {
                        cells[c] = Cell::Running;
                    }
                }
            }
            Event::Step {
                phase,
                node,
                message,
            } => {
                if message.contains("warning") || message.contains("error") {
                    self.notes.push(format!(
                        "{phase}: {}{message}",
                        node.as_deref()
                            .map(|n| format!("{n}: "))
                            .unwrap_or_default()
                    ));
                }
                match node.as_deref().and_then(|n| self.rows.get_mut(n)) {
                    Some((_, last)) => *last = message.clone(),
                    None => self.cluster = format!("{phase}: {message}"),
                }
            }
            Event::PhaseDone { phase, outcome, .. } => {
                if let Some(c) = col(phase) {
                    for (n, (cells, _)) in self.rows.iter_mut() {
                        cells[c] = if outcome.nodes.contains(n) {
                            Cell::Changed
                        } else {
                            Cell::Unchanged
                        };
                    }
                }
            }
            Event::PhaseFailed { phase, error } => {
                if let Some(c) = col(phase) {
                    for (cells, _) in self.rows.values_mut() {
                        cells[c] = Cell::Failed;
                    }
                }
                self.cluster = format!("{phase} failed: {}", error.lines().next().unwrap_or(""));
            }
            Event::Notice { node, message } => {
                let line = format!(
                    "{}{message}",
                    node.as_deref()
                        .map(|n| format!("{n}: "))
                        .unwrap_or_default()
                );
                self.cluster = line.clone();
                self.notes.push(line);
            }
        }
    }

    /// The table as text, each line cut to `width` characters.
    pub fn frame(&self, title: &str, elapsed: f64, width: usize) -> String {
        let name_w = self
            .rows
            .keys()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut lines = vec![format!("{title} · {elapsed:.0}s")];
        let mut head = format!("{:<name_w$}", "node");
        for p in &self.phases {
            head.push_str(&format!(" {p}"));
        }
        lines.push(head);
        for (n, (cells, last)) in &self.rows {
            let mut l = format!("{n:<name_w$}");
            for (p, c) in self.phases.iter().zip(cells) {
                l.push_str(&format!(" {:<w$}", c.mark(), w = p.chars().count()));
            }
            l.push_str("  ");
            l.push_str(last);
            lines.push(l);
        }
        if !self.cluster.is_empty() {
            lines.push(format!("{:<name_w$}  {}", "*", self.cluster));
        }
        lines.push(format!(
            "{} waiting  {} running  {} unchanged  {} changed  {} failed",
            Cell::Waiting.mark(),
            Cell::Running.mark(),
            Cell::Unchanged.mark(),
            Cell::Changed.mark(),
            Cell::Failed.mark()
        ));
        lines.extend(self.notes.iter().cloned());
        lines
            .iter()
            .map(|l| {
                l.chars()
                    .take(width.max(20))
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct LiveState {
    table: Table,
    drawn: usize,
    running: bool,
}

/// The live table on stderr, redrawn on every event and four times a second.
pub struct LiveTable {
    title: String,
    start: Instant,
    state: Arc<Mutex<LiveState>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl LiveTable {
    /// Starts drawing.
    pub fn start(title: String, nodes: &[String], phases: Vec<&'static str>) -> Self {
        let state = Arc::new(Mutex::new(LiveState {
            table: Table::new(nodes, phases),
            drawn: 0,
            running: true,
        }));
        let start = Instant::now();
        let ticker = {
            let state = Arc::clone(&state);
            let title = title.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if !s.running {
                    return;
                }
                draw(&mut s, &title, start);
            })
        };
        Self {
            title,
            start,
            state,
            ticker: Some(ticker),
        }
    }

    /// Draws the last frame and stops.
    pub fn finish(mut self) {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.running = false;
            draw(&mut s, &self.title, self.start);
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

fn draw(s: &mut LiveState, title: &str, start: Instant) {
    let width = terminal_size::terminal_size_of(std::io::stderr())
        .map(|(w, _)| w.0 as usize)
        .unwrap_or(100);
    let frame = s.table.frame(title, start.elapsed().as_secs_f64(), width);
    let mut err = std::io::stderr().lock();
    if s.drawn > 0 {
        // Back to the table's first line, and clear below.
        let _ = write!(err, "\x1b[{}F\x1b[J", s.drawn);
    }
    let _ = writeln!(err, "{frame}");
    let _ = err.flush();
    s.drawn = frame.lines().count();
}

impl Reporter for LiveTable {
    fn event(&self, e: &Event) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.table.apply(e);
        if !matches!(e, Event::Step { .. }) {
            draw(&mut s, &self.title, self.start);
        }
    }
}

/// The reporter of commands that have no phases: an operation's notices
/// (a host key recorded, a lock waited for) on stderr, one line each.
pub struct Notices;

impl Reporter for Notices {
    fn event(&self, e: &Event) {
        if let Event::Notice { node, message } = e {
            match node {
                Some(n) => eprintln!("{n}: {message}"),
                None => eprintln!("{message}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Outcome;

    #[test]
    fn the_table_shows_each_node_in_each_phase() {
        let nodes: Vec<String> = ["node1", "node2", "node3"].map(String::from).to_vec();
        let mut t = Table::new(&nodes, vec!["facts", "docker", "mesh", "swarm"]);
        let mut joined = Outcome::default();
        joined.node("node3");
        for e in [
            Event::PhaseStarted { phase: "facts" },
            Event::PhaseDone {
                phase: "facts",
                seconds: 0.2,
                outcome: Outcome::default(),
            },
            Event::PhaseStarted { phase: "docker" },
            Event::Step {
                phase: "docker",
                node: Some("node2".into()),
                message: "warning: clock 3 s behind".into(),
            },
            Event::PhaseDone {
                phase: "docker",
                seconds: 0.1,
                outcome: joined.clone(),
            },
            Event::PhaseStarted { phase: "mesh" },
            Event::Step {
                phase: "mesh",
                node: Some("node1".into()),
                message: "configuration written".into(),
            },
            Event::Step {
                phase: "mesh",
                node: None,
                message: "3 pairs answer".into(),
            },
        ] {
            t.apply(&e);
        }
        insta::assert_snapshot!(t.frame("clusterkit up · cluster demo", 12.0, 80));
        t.apply(&Event::PhaseFailed {
            phase: "mesh",
            error: "node3 cannot reach node1\nmore".into(),
        });
        let f = t.frame("t", 1.0, 30);
        assert!(f.lines().all(|l| l.chars().count() <= 30), "{f}");
        assert!(f.contains("mesh failed: node3"), "{f}");
    }
}
