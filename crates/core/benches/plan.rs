//! Validate and plan a generated 1,000-node inventory, and 100,000 hosts
//! written three ways (one range line, one line each, YAML): the time
//! (criterion) and the peak memory of the whole bench process (VmHWM,
//! printed at the end). Reading is linear: 100,000 hosts stay well under 2 s.
//!
//! Run with `cargo bench -p clusterkit-core --bench plan`.

use std::hint::black_box;

use clusterkit_core::inventory::{Format, Inventory};
use clusterkit_core::plan::plan;
use clusterkit_core::source::SourceFile;
use clusterkit_core::spec::build;
use clusterkit_core::state::State;
use clusterkit_core::Problems;
use criterion::Criterion;

/// An INI inventory of `n` nodes in groups of 100, with group variables.
fn inventory(n: usize) -> String {
    let mut out = String::from("[all:vars]\nansible_user=root\n\n");
    for g in 0..n.div_ceil(100) {
        out.push_str(&format!("[rack{g}]\n"));
        for i in g * 100..((g + 1) * 100).min(n) {
            out.push_str(&format!(
                "node{i} ansible_host=172.16.{}.{} ansible_port=22\n",
                i / 250,
                i % 250 + 1
            ));
        }
        out.push_str(&format!("[rack{g}:vars]\nansible_become=false\n\n"));
    }
    out
}

fn validate_and_plan(text: &str, state: &State) -> usize {
    validate_and_plan_as(text, Format::Ini, "10.0.0.0/21", state)
}

/// 100,000 hosts need a mesh of more than a /16.
const WIDE: &str = "10.128.0.0/9";

fn validate_and_plan_as(text: &str, format: Format, mesh: &str, state: &State) -> usize {
    let mut problems = Problems::default();
    let file = SourceFile::new("hosts", text);
    let inv = Inventory::parse(file, format, &mut problems);
    assert!(!problems.has_errors(), "{problems:?}");
    let cfg_file = SourceFile::new(
        "clusterkit.toml",
        format!("[mesh]\ncidr = \"{mesh}\"\n[swarm]\ndefault_addr_pool = \"10.64.0.0/16\"\n"),
    );
    let cfg = clusterkit_core::config::ConfigFile::parse(&cfg_file, &mut problems).expect("config");
    let built = build(Some((cfg_file, cfg)), Some(&inv), state, &|_| None).expect("valid");
    let p = plan(&built.spec);
    p.nodes.len()
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let text = inventory(1000);
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("validate+plan 1000 nodes, fresh state", |b| {
        b.iter(|| black_box(validate_and_plan(black_box(&text), &State::default())))
    });
    // The usual re-run: every address already recorded.
    let mut problems = Problems::default();
    let inv = Inventory::parse(
        SourceFile::new("hosts.ini", text.as_str()),
        Format::Ini,
        &mut problems,
    );
    let cfg_file = SourceFile::new("c.toml", "[mesh]\ncidr = \"10.0.0.0/21\"\n");
    let cfg = clusterkit_core::config::ConfigFile::parse(&cfg_file, &mut problems).unwrap();
    let state = build(
        Some((cfg_file, cfg)),
        Some(&inv),
        &State::default(),
        &|_| None,
    )
    .unwrap()
    .state;
    c.bench_function("validate+plan 1000 nodes, recorded state", |b| {
        b.iter(|| black_box(validate_and_plan(black_box(&text), &state)))
    });
    let many = 100_000;
    let range = "[s]\nnode[1:100000]\n".to_string();
    let lines: String = std::iter::once("[s]\n".to_string())
        .chain((1..=many).map(|i| {
            format!(
                "node{i} ansible_host=10.{}.{}.{}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        }))
        .collect();
    let yaml: String = std::iter::once("all:\n  hosts:\n".to_string())
        .chain((1..=many).map(|i| {
            format!(
                "    node{i}:\n      ansible_host: 10.{}.{}.{}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        }))
        .collect();
    let mut g = c.benchmark_group("100000 hosts");
    g.sample_size(10);
    for (what, text, format) in [
        ("one range line", &range, Format::Ini),
        ("one line each", &lines, Format::Ini),
        ("yaml", &yaml, Format::Yaml),
    ] {
        g.bench_function(what, |b| {
            b.iter(|| {
                black_box(validate_and_plan_as(
                    black_box(text),
                    format,
                    WIDE,
                    &State::default(),
                ))
            })
        });
    }
    g.finish();
    c.final_summary();
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak memory of the bench process (VmHWM): {} MiB",
            kib / 1024
        );
    }
}
