//! Printing: problems through miette, tables through comfy-table.

use std::io::IsTerminal;

use clusterkit_core::{Problem, Problems};
use miette::{GraphicalReportHandler, GraphicalTheme};

/// Whether an error is a closed stdout (`clusterkit plan | head`): not an error.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether to colour stderr.
pub fn color_stderr(choice: crate::cmd::Color) -> bool {
    match choice {
        crate::cmd::Color::Always => true,
        crate::cmd::Color::Never => false,
        crate::cmd::Color::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

/// Renders one problem the way `validate` prints it.
pub fn render(p: &Problem, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .render_report(&mut out, p)
        .expect("rendering into a String cannot fail");
    out
}

/// Prints every problem to stderr, errors last so they stay in view.
pub fn print_problems(problems: &Problems, color: bool) {
    for p in problems.warnings().chain(problems.errors()) {
        eprint!("{}", render(p, color));
    }
}
