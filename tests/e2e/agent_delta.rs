//! Delta updates with real processes: a v1 agent built from this source, a real update server
//! and a release 2.0.0 whose artifact lists a signed zstd patch from v1's binary. A good patch
//! is applied (only patch bytes downloaded); a tampered patch, a patch made from another base
//! and a truncated patch are each refused (`delta_failed`) and the same attempt downloads the
//! full artifact. One test goes through a site's release flow with the real `worker-release`
//! (`sign-release --delta-from`, `publish`, `promote`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::agent_at_version;
use e2e::fleet::{metric, PLATFORM};
use e2e::world::World;
use manifests::{Delta, Release, Signed};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// How long an agent may take from the promotion to serving v2 (debug builds: large files).
const UPDATE_WAIT: Duration = Duration::from_secs(180);

/// A patch from `base` to v2's binary, at a fast level (the CLI uses a higher one).
fn patch_from(base: &Path) -> Vec<u8> {
    let base = std::fs::read(base).expect("read base");
    let target = agent_at_version(V2);
    let size = std::fs::metadata(&target).expect("v2").len();
    let mut out = Vec::new();
    manifests::make_patch(
        &base,
        std::io::BufReader::new(std::fs::File::open(&target).expect("open v2")),
        size,
        3,
        &mut out,
    )
    .expect("patch");
    out
}

/// Signs v2 with one delta whose patch file is `patch` (listed as from v1's binary), publishes
/// the release, the artifact and the patch, and promotes it to the whole channel.
fn roll_out_with_delta(w: &World, patch: &[u8]) -> PathBuf {
    let v2 = agent_at_version(V2);
    let (base_sha256, _) = manifests::hash_file(&agent_at_version(V1)).expect("hash v1");
    let patch_path = w.sandbox.path().join("v1-to-v2.zst");
    std::fs::write(&patch_path, patch).expect("write patch");
    let (patch_sha256, patch_size) = manifests::hash_file(&patch_path).expect("hash patch");
    let (mut doc, _) = w.trust.sign_release(V2, "0.0.0", &[(PLATFORM, &v2)]);
    doc.signed.artifacts[0].deltas.push(Delta {
        base_version: V1.parse().expect("version"),
        base_sha256,
        url: format!("/api/worker-updates/artifacts/{patch_sha256}"),
        patch_sha256,
        patch_size,
        extra: Default::default(),
    });
    let doc = Signed::sign(doc.signed, &[&w.trust.release_key]).expect("sign");
    w.server.publish(&doc, &[&v2, &patch_path]);
    w.server.promote("stable", V2, 100);
    patch_path
}

#[test]
fn a_v1_agent_applies_the_signed_delta_and_downloads_only_the_patch() {
    let w = World::new();
    let agent = w.agent(V1).start();
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let patch = patch_from(&agent_at_version(V1));
    let full = std::fs::metadata(agent_at_version(V2)).expect("v2").len();
    assert!(
        (patch.len() as u64) * 5 < full,
        "patch {} bytes for {full}",
        patch.len()
    );
    roll_out_with_delta(&w, &patch);
    agent.wait_until("v2 serving", UPDATE_WAIT, |a| a.serves_version(V2));
    w.wait_for_report(
        &agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            "worker_update_bytes_downloaded_total{kind=\"delta\"}"
        ),
        Some(patch.len() as f64),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "worker_update_bytes_downloaded_total{kind=\"full\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "worker_update_failure_total{reason=\"delta_failed\"}"
        ),
        None,
        "{metrics}"
    );
    assert!(
        agent.log().contains("delta update applied"),
        "{}",
        agent.log()
    );
}

/// `path` as a command-line argument.
fn arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The release flow a site runs, with the real CLI only: `sign-release --delta-from` the v1
/// binary (the patch is written next to `--out` and signed into the release), `publish`
/// uploads the full artifact and the patch, `promote` rolls it out; the registered v1 agent
/// installs v2 having downloaded exactly the patch's bytes and no full-artifact byte.
#[test]
fn a_delta_signed_published_and_promoted_with_the_cli_is_all_a_v1_agent_downloads() {
    let w = World::new();
    let token = w
        .sandbox
        .write_secret("admin.token", format!("{}\n", w.server.admin_token));
    // Registered before the promotion (a promotion may start with a first wave of named
    // workers: the agent must be in the inventory when it is planned).
    let agent = w.agent(V1).start();
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    agent.wait_until("the agent registered", Duration::from_secs(30), |_| {
        w.server.admin().get("/api/admin/workers").json()["total"] == 1
    });

    let (v1, v2) = (agent_at_version(V1), agent_at_version(V2));
    let release = w.sandbox.join("release-2.0.0.json");
    let out = w
        .sandbox
        .release_cli(&[
            "sign-release",
            "--version",
            V2,
            "--minimum-version",
            V1,
            "--artifact",
            &format!("{PLATFORM}={}", v2.display()),
            "--delta-from",
            &arg(&v1),
            "--key",
            &arg(&w.trust.release_key_path),
            "--root",
            &arg(&w.trust.root_path),
            "--out",
            &arg(&release),
        ])
        .success();
    let patch = w
        .sandbox
        .join(&format!("delta-{V1}-to-{V2}-{PLATFORM}.zst"));
    assert!(
        out.contains(&format!(
            "delta {V1} -> {V2} ({PLATFORM}): {}",
            patch.display()
        )),
        "{out}"
    );
    // Signed into the release: the base (version and hash of v1's binary) and the patch.
    let doc = Signed::<Release>::load(&release).expect("signed release");
    let artifact = &doc.signed.artifacts[0];
    let (v1_sha, _) = manifests::hash_file(&v1).expect("hash v1");
    let (v2_sha, full) = manifests::hash_file(&v2).expect("hash v2");
    let (patch_sha, patch_size) = manifests::hash_file(&patch).expect("hash patch");
    assert_eq!(
        (artifact.sha256.as_str(), artifact.size),
        (v2_sha.as_str(), full)
    );
    assert_eq!(artifact.deltas.len(), 1, "{:?}", artifact.deltas);
    let delta = &artifact.deltas[0];
    assert_eq!(delta.base_version.to_string(), V1);
    assert_eq!(delta.base_sha256, v1_sha);
    assert_eq!(
        (delta.patch_sha256.as_str(), delta.patch_size),
        (patch_sha.as_str(), patch_size)
    );
    assert!(patch_size * 5 < full, "patch {patch_size} bytes for {full}");

    let published = w
        .sandbox
        .release_cli(&[
            "publish",
            "--server",
            &w.server.url,
            "--token-file",
            &arg(&token),
            &arg(&release),
            "--artifact",
            &arg(&v2),
            "--artifact",
            &arg(&patch),
        ])
        .success();
    for line in [
        format!(
            "artifact {PLATFORM}: stored ({}, {full} bytes)",
            v2.display()
        ),
        format!(
            "delta {PLATFORM}: stored ({}, {patch_size} bytes)",
            patch.display()
        ),
    ] {
        assert!(published.contains(&line), "{line:?} not in:\n{published}");
    }
    w.sandbox
        .release_cli(&[
            "promote",
            "--server",
            &w.server.url,
            "--token-file",
            &arg(&token),
            "--channel",
            "stable",
            "--version",
            V2,
            "--percent",
            "100",
            "--override",
            "--reason",
            "delta through the CLI",
        ])
        .success();

    agent.wait_until("v2 serving", UPDATE_WAIT, |a| a.serves_version(V2));
    w.wait_for_report(
        &agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    assert_eq!(
        manifests::hash_file(&agent.install_path).expect("hash").0,
        v2_sha
    );
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            "worker_update_bytes_downloaded_total{kind=\"delta\"}"
        ),
        Some(patch_size as f64),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "worker_update_bytes_downloaded_total{kind=\"full\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "worker_update_failure_total{reason=\"delta_failed\"}"
        ),
        None,
        "{metrics}"
    );
}

/// A bad patch is refused with `delta_failed`, then the full artifact is installed.
fn refused_then_full(patch: Vec<u8>) {
    let w = World::new();
    let agent = w.agent(V1).start();
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    roll_out_with_delta(&w, &patch);
    agent.wait_until("v2 serving", UPDATE_WAIT, |a| a.serves_version(V2));
    w.wait_for_report(
        &agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            "worker_update_failure_total{reason=\"delta_failed\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let full = std::fs::metadata(agent_at_version(V2)).expect("v2").len() as f64;
    assert_eq!(
        metric(
            &metrics,
            "worker_update_bytes_downloaded_total{kind=\"full\"}"
        ),
        Some(full),
        "{metrics}"
    );
    assert!(
        agent
            .log()
            .contains("delta update refused; downloading the full artifact instead"),
        "{}",
        agent.log()
    );
    // The report says why, and the server does not count it against the release.
    assert!(
        w.server.reports().contains("delta_failed"),
        "{}",
        w.server.reports()
    );
}

#[test]
fn a_tampered_patch_is_refused_and_the_full_artifact_installed() {
    let mut patch = patch_from(&agent_at_version(V1));
    let middle = patch.len() / 2;
    for byte in &mut patch[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    refused_then_full(patch);
}

#[test]
fn a_patch_for_another_base_is_refused_and_the_full_artifact_installed() {
    // Made from the release CLI's binary, listed as from v1's.
    refused_then_full(patch_from(&e2e::bin("worker-release")));
}

#[test]
fn a_truncated_patch_is_refused_and_the_full_artifact_installed() {
    let mut patch = patch_from(&agent_at_version(V1));
    patch.truncate(patch.len() * 2 / 3);
    refused_then_full(patch);
}

/// The `.patching` files in the agent's install directory.
fn patching_files(install: &Path) -> Vec<String> {
    std::fs::read_dir(install.parent().expect("install dir"))
        .expect("list install dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".patching"))
        .collect()
}

/// `kill -9` of the supervisor and its worker while the worker applies the patch (failpoint
/// `patching`, after the patched file is created): the install path is still v1 and runs, no
/// `.patching` file is staged, the restarted agent removes stale `.patching` files, updates to
/// v2 and reports one success.
#[test]
fn kill_9_while_patching_leaves_v1_installed_and_the_update_then_completes() {
    let w = World::new();
    let mut agent = w
        .agent(V1)
        .env(&[("WORKER_AGENT_FAILPOINT", "patching")])
        .start();
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let (v1_sha, _) = manifests::hash_file(&agent_at_version(V1)).expect("hash v1");
    let (v2_sha, _) = manifests::hash_file(&agent_at_version(V2)).expect("hash v2");
    roll_out_with_delta(&w, &patch_from(&agent_at_version(V1)));
    let marker = agent.state_dir.join("failpoint-patching");
    agent.wait_until("the patching failpoint", UPDATE_WAIT, |_| marker.exists());
    assert_eq!(
        patching_files(&agent.install_path).len(),
        1,
        "the patch is being applied into a .patching file"
    );

    agent.kill9_all();
    std::thread::sleep(Duration::from_millis(500));
    // Nothing runs now: the install path is the complete v1 binary, and it runs.
    assert_eq!(
        manifests::hash_file(&agent.install_path).expect("hash").0,
        v1_sha
    );
    assert!(
        agent.installed_version().starts_with("worker-agent 1.0.0 "),
        "{}",
        agent.installed_version()
    );
    // The half-patched file was never staged: no pending update names it.
    let pending = std::fs::read_to_string(agent.state_dir.join("pending.json")).unwrap_or_default();
    assert!(!pending.contains(".patching"), "{pending}");
    // A stale file of another release's interrupted apply, too: the restart removes both.
    let stale = agent
        .install_path
        .with_file_name(".worker-agent-00000000deadbeef.patching");
    std::fs::write(&stale, b"half a binary").expect("plant a stale .patching file");

    std::fs::remove_file(&marker).expect("remove marker");
    agent.restart_with_env(&[]);
    agent.wait_until(
        "v2 committed and serving after the restart",
        UPDATE_WAIT,
        |a| {
            a.serves_version(V2)
                && manifests::hash_file(&a.install_path).is_ok_and(|(sha, _)| sha == v2_sha)
        },
    );
    assert!(!stale.exists(), "the stale .patching file was not removed");
    assert!(
        patching_files(&agent.install_path).is_empty(),
        "{:?}",
        patching_files(&agent.install_path)
    );
    assert!(
        agent
            .log()
            .contains("removed a stale patched file left by an interrupted delta update"),
        "{}",
        agent.log()
    );
    w.wait_for_report(
        &agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    let reports = w.server.reports();
    assert_eq!(
        reports.matches(&format!("success {V1}->{V2}")).count(),
        1,
        "{reports}"
    );
    assert!(
        !reports.contains("failure") && !reports.contains("rolled_back"),
        "{reports}\n--- agent log ---\n{}",
        agent.log()
    );
}
