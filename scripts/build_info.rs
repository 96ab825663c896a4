//! Shared build script of the three binaries: embeds the version, commit, build date and target
//! so that `--version` prints `NAME VERSION (commit SHA, built DATE, TARGET)`.
//!
//! `WORKER_AGENT_VERSION` overrides the agent's version at build time: the end-to-end tests build
//! the same source at two versions this way. `WORKER_BUILD_COMMIT` and `SOURCE_DATE_EPOCH` make
//! release builds reproducible (see `scripts/build-worker.sh`).

use std::path::Path;
use std::process::Command;

fn main() {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let mut version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rerun-if-env-changed=WORKER_AGENT_VERSION");
    println!("cargo:rerun-if-env-changed=WORKER_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    if package == "worker-agent" {
        if let Ok(overridden) = std::env::var("WORKER_AGENT_VERSION") {
            if !overridden.is_empty() {
                assert!(
                    is_semver(&overridden),
                    "WORKER_AGENT_VERSION={overridden:?} is not a semantic version (MAJOR.MINOR.PATCH)"
                );
                version = overridden;
            }
        }
    }
    let commit = std::env::var("WORKER_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    let date = build_date();
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_VERSION={version}");
    println!("cargo:rustc-env=BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=BUILD_DATE={date}");
    println!("cargo:rustc-env=BUILD_TARGET={target}");

    // Re-run when HEAD moves, but only watch files that exist: a missing path makes cargo re-run
    // the script on every build.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let git_dir = Path::new(&manifest_dir).join("../.git");
    for watched in ["HEAD", "refs/heads"] {
        let path = git_dir.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-changed=../scripts/build_info.rs");
}

fn is_semver(text: &str) -> bool {
    let core = text.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The UTC date of the build, or of `SOURCE_DATE_EPOCH` when set (reproducible builds).
fn build_date() -> String {
    let mut command = Command::new("date");
    command.args(["-u", "+%Y-%m-%d"]);
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|e| !e.is_empty())
    {
        command.arg(format!("--date=@{epoch}"));
    }
    command
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
