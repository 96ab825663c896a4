//! Every binary reports `NAME VERSION (commit SHA, built DATE, TARGET)` and takes `--help`.

use e2e::{agent_at_version, bin, Sandbox};

#[track_caller]
fn assert_version_line(line: &str, name: &str, version: &str) {
    let line = line.trim_end();
    let prefix = format!("{name} {version} (commit ");
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (commit, rest) = rest.split_once(", built ").expect("has ', built '");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "commit {commit:?}"
    );
    let (date, target) = rest.split_once(", ").expect("has target");
    assert_eq!(date.len(), 10, "date {date:?}");
    assert!(date.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
        c == '-'
    } else {
        c.is_ascii_digit()
    }));
    assert_eq!(target, format!("{})", manifests::BUILD_PLATFORM));
}

#[test]
fn every_binary_prints_its_version_and_help() {
    let sandbox = Sandbox::new();
    for name in ["worker-agent", "update-server", "worker-release"] {
        let out = sandbox.run(&bin(name), &["--version"]).success();
        assert_version_line(&out, name, "0.1.0");
        let help = sandbox.run(&bin(name), &["--help"]).success();
        assert!(help.contains("Usage:"), "{name} --help: {help}");
    }
}

#[test]
fn agent_version_is_overridden_at_build_time() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .run(&agent_at_version("2.0.0"), &["--version"])
        .success();
    assert_version_line(&out, "worker-agent", "2.0.0");
    // The default build is unaffected.
    let out = sandbox.run(&bin("worker-agent"), &["--version"]).success();
    assert_version_line(&out, "worker-agent", "0.1.0");
}
