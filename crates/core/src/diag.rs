//! Problems found in a cluster description: errors and warnings that point at
//! the file, line and column of the culprit and say how to fix it.

use std::fmt;

use miette::{Diagnostic, LabeledSpan, SourceCode};

use crate::source::Loc;

/// A value, file or answer refused by a check: what is wrong with it and,
/// where there is one, the way out (its `Display`). Returned by the checks
/// and parsers of single values ([`crate::NodeName::new`],
/// [`crate::spec::checks`], [`crate::state::State::parse`], ...), which
/// the validation of a whole description turns into located [`Problem`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl std::ops::Deref for Invalid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> Self {
        e.0
    }
}

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; clusterkit goes on.
    Warning,
    /// clusterkit refuses to go on until it is fixed.
    Error,
}

/// One problem in an inventory or config, with the places it concerns.
///
/// It renders through miette; the first label decides which file is quoted.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// The places concerned, each with a short note; may be empty.
    pub labels: Vec<(Loc, String)>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Problem {
    /// An error with a message and no location yet. Control characters in
    /// the message (a line break inside a value it quotes) are shown
    /// escaped: a value cannot add a line to what is printed.
    pub fn error(message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = if message.chars().any(char::is_control) {
            let mut out = String::with_capacity(message.len() + 8);
            for c in message.chars() {
                if c.is_control() {
                    out.extend(c.escape_debug());
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            message
        };
        Self {
            severity: Severity::Error,
            message,
            labels: Vec::new(),
            help: None,
        }
    }

    /// A warning with a message and no location yet.
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message)
        }
    }

    /// Adds a labelled place; `None` (a default value) adds nothing.
    pub fn at(mut self, loc: Option<&Loc>, label: impl Into<String>) -> Self {
        if let Some(loc) = loc {
            self.labels.push((loc.clone(), label.into()));
        }
        self
    }

    /// Sets the advice on how to fix it.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Where the problem is, as `file:line:col` of its first label.
    pub fn location(&self) -> Option<String> {
        self.labels.first().map(|(loc, _)| loc.to_string())
    }

    fn primary_file(&self) -> Option<&Loc> {
        self.labels.first().map(|(l, _)| l)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.primary_file().map(|l| &*l.file as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let file = &self.primary_file()?.file.name;
        Some(Box::new(
            self.labels
                .iter()
                .filter(move |(l, _)| &l.file.name == file)
                .map(|(l, text)| {
                    LabeledSpan::new(Some(text.clone()), l.span.offset, l.span.len.max(1))
                }),
        ))
    }
}

impl SourceCode for crate::source::SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// The problems found while reading and validating a cluster description.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem, once: a group variable shared by many hosts is reported
    /// at its one place, not once per host.
    pub fn push(&mut self, p: Problem) {
        if !self.0.contains(&p) {
            self.0.push(p);
        }
    }

    /// True when at least one problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Warning)
    }
}

/// "did you mean `x`?" for a misspelt key, when one of `known` is close enough.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(word, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

/// Errors of clusterkit-core's loading functions.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path as given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The description has errors; all problems found (warnings included) are listed.
    #[error("{} error(s) in the cluster description", .0.errors().count())]
    Invalid(Problems),
}
