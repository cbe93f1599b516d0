//! Source files and locations inside them, so every problem can name `file:line:col`.

use std::fmt;
use std::sync::Arc;

/// A file clusterkit read (an inventory or a config), kept whole so that
/// diagnostics can quote it.
#[derive(PartialEq, Eq)]
pub struct SourceFile {
    /// The name shown to the user: the path as given on the command line.
    pub name: String,
    /// The file's text.
    pub text: String,
    /// The byte offset where each line starts: a location is found in
    /// constant time, so reading a file of 100,000 hosts stays linear.
    line_starts: Vec<usize>,
}

/// The name and size: a problem's debug output does not repeat the file.
impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceFile({}, {} bytes)", self.name, self.text.len())
    }
}

impl SourceFile {
    /// Wraps a file's name and text for sharing between the values read from it.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        let text: String = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Arc::new(Self {
            name: name.into(),
            text,
            line_starts,
        })
    }

    /// The byte offset of a 1-based line and a 1-based column counted in characters,
    /// clamped to the end of the text.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let Some(&start) = line.checked_sub(1).and_then(|l| self.line_starts.get(l)) else {
            return self.text.len();
        };
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        let l = &self.text[start..end];
        start
            + l.char_indices()
                .nth(column.saturating_sub(1))
                .map_or(l.trim_end_matches('\n').len(), |(b, _)| b)
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|s| *s <= offset);
        let start = self.line_starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

/// A byte range inside a [`SourceFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    /// A span from a byte offset and a length.
    pub fn new(offset: usize, len: usize) -> Self {
        Self { offset, len }
    }
}

/// Where a value came from: a file and a span inside it.
#[derive(Debug, Clone)]
pub struct Loc {
    /// The file.
    pub file: Arc<SourceFile>,
    /// The bytes of the value in that file.
    pub span: Span,
}

impl Loc {
    /// A location in `file`.
    pub fn new(file: &Arc<SourceFile>, span: Span) -> Self {
        Self {
            file: Arc::clone(file),
            span,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.file.line_col(self.span.offset);
        write!(f, "{}:{line}:{col}", self.file.name)
    }
}

impl PartialEq for Loc {
    fn eq(&self, other: &Self) -> bool {
        self.file.name == other.file.name && self.span == other.span
    }
}

/// A value and where it was written; values that clusterkit filled in from a
/// default have no location.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written, if it was.
    pub loc: Option<Loc>,
}

impl<T> Located<T> {
    /// A value read at `loc`.
    pub fn at(value: T, loc: Loc) -> Self {
        Self {
            value,
            loc: Some(loc),
        }
    }

    /// A value that nobody wrote (a default).
    pub fn default_value(value: T) -> Self {
        Self { value, loc: None }
    }
}
