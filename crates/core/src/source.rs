//! Source files and locations inside them, so every problem can name `file:line:col`.

use std::fmt;
use std::sync::Arc;

/// A file clusterkit read (an inventory or a config), kept whole so that
/// diagnostics can quote it.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The name shown to the user: the path as given on the command line.
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl SourceFile {
    /// Wraps a file's name and text for sharing between the values read from it.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            text: text.into(),
        })
    }

    /// The byte offset of a 1-based line and a 1-based column counted in characters,
    /// clamped to the end of the text.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let within = l
                    .char_indices()
                    .nth(column.saturating_sub(1))
                    .map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
                return offset + within;
            }
            offset += l.len();
        }
        self.text.len()
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
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
