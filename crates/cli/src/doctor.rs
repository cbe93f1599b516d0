//! `clusterkit doctor`: prints [`clusterkit_ops::doctor::doctor`]'s findings.

use clusterkit_core::spec::Loaded;
use clusterkit_ops::doctor::Level;

use crate::exit;

/// `clusterkit doctor [--json]`.
pub fn run(loaded: &Loaded, json: bool) -> anyhow::Result<u8> {
    let notices = clusterkit_core::reporters::Notices;
    let session = clusterkit_ops::Session::new(loaded, crate::remote::options(), &notices);
    let report = crate::block_on(clusterkit_ops::doctor::doctor(&session));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.checks {
            let l = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{l} {:<8} {}", f.section, f.message);
        }
    }
    Ok(if report.healthy {
        exit::OK
    } else {
        exit::FAILURE
    })
}
