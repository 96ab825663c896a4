//! The ESUP layer knows nothing of updates: it depends on neither the agent nor the signed
//! release format, so nothing about releases can reach it but what the agent passes in (the
//! gate, the task metrics, the version string).

use std::process::Command;

#[test]
fn the_runner_depends_on_neither_the_agent_nor_the_release_format() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--package",
            "esup-runner",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(packages.contains(&"esup-runner"), "{tree}");
    for forbidden in ["worker-agent", "manifests", "update-server"] {
        assert!(
            !packages.contains(&forbidden),
            "esup-runner depends on {forbidden}:\n{tree}"
        );
    }
}
