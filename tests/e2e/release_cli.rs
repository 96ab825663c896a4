//! `worker-release`: keys, roots, releases, rollbacks, channel statements, verification, with
//! real key files and real artifacts on disk.

use std::os::unix::fs::PermissionsExt;

use e2e::Sandbox;

/// A sandbox with keys root-1..3, release, channel and a root (1 of root-1) signed.
fn with_root() -> Sandbox {
    let sb = Sandbox::new();
    for name in ["root-1", "root-2", "root-3", "release", "channel"] {
        sb.release_cli(&["keygen", "--out", "keys", "--name", name])
            .success();
    }
    sb.release_cli(&[
        "init-root",
        "--root-key",
        "keys/root-1.pub",
        "--release-key",
        "keys/release.pub",
        "--channel-key",
        "keys/channel.pub",
        "--key",
        "keys/root-1.key",
        "--out",
        "root.json",
    ])
    .success();
    sb
}

fn sign_release(sb: &Sandbox, version: &str, artifact: &str) -> String {
    sb.release_cli(&[
        "sign-release",
        "--version",
        version,
        "--artifact",
        &format!("x86_64-unknown-linux-gnu={artifact}"),
        "--key",
        "keys/release.key",
        "--out",
        "release.json",
    ])
    .success()
}

fn edit_json(sb: &Sandbox, file: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = sb.join(file);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    edit(&mut value);
    std::fs::write(&path, serde_json::to_vec_pretty(&value).expect("serialize")).expect("write");
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read_and_never_overwrites() {
    let sb = Sandbox::new();
    let out = sb
        .release_cli(&["keygen", "--out", "keys", "--name", "release"])
        .success();
    let mode = std::fs::metadata(sb.join("keys/release.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let public: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.join("keys/release.pub")).expect("pub"))
            .expect("json");
    assert_eq!(public["scheme"], "ed25519");
    let keyid = public["keyid"].as_str().expect("keyid");
    assert!(out.contains(keyid), "keygen prints the key id: {out}");
    let err = sb
        .release_cli(&["keygen", "--out", "keys", "--name", "release"])
        .failure();
    assert!(
        err.contains("release.key") && err.lines().count() == 1,
        "one clear line: {err}"
    );
    let err = sb
        .release_cli(&["keygen", "--out", "keys", "--name", "../evil"])
        .failure();
    assert!(err.contains("may only contain"), "{err}");
}

#[test]
fn signed_release_verifies_with_its_artifact_and_tampering_is_named() {
    let sb = with_root();
    sb.write("worker-agent", b"#!/bin/sh\necho v1.1.0\n".repeat(1000));
    sign_release(&sb, "1.1.0", "worker-agent");
    let release: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.join("release.json")).expect("read"))
            .expect("json");
    let artifact = &release["signed"]["artifacts"][0];
    assert_eq!(artifact["size"], 22_000);
    let sha = artifact["sha256"].as_str().expect("sha");
    assert_eq!(
        artifact["url"],
        format!("/api/worker-updates/artifacts/{sha}")
    );

    let ok = sb
        .release_cli(&[
            "verify",
            "--root",
            "root.json",
            "release.json",
            "--artifact",
            "worker-agent",
        ])
        .success();
    assert!(
        ok.starts_with("OK: release.json: release worker-agent 1.1.0"),
        "{ok}"
    );

    // A different file: hash mismatch, named.
    sb.write("other", b"not the release");
    let err = sb
        .release_cli(&[
            "verify",
            "--root",
            "root.json",
            "release.json",
            "--artifact",
            "other",
        ])
        .failure();
    assert!(err.contains("[hash_mismatch]"), "{err}");

    // Same content plus one byte: the platform form reports the size.
    sb.write(
        "longer",
        [b"#!/bin/sh\necho v1.1.0\n".repeat(1000), b"x".to_vec()].concat(),
    );
    let err = sb
        .release_cli(&[
            "verify",
            "--root",
            "root.json",
            "release.json",
            "--artifact",
            "x86_64-unknown-linux-gnu=longer",
        ])
        .failure();
    assert!(err.contains("[size_mismatch]"), "{err}");

    // Tamper with a signed field.
    edit_json(&sb, "release.json", |v| {
        v["signed"]["notes"] = "now with a backdoor".into()
    });
    let err = sb
        .release_cli(&["verify", "--root", "root.json", "release.json"])
        .failure();
    assert!(err.contains("[bad_signature]"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn release_signed_by_a_key_outside_the_release_role_fails_the_threshold() {
    let sb = with_root();
    sb.write("a", b"a");
    sb.release_cli(&[
        "sign-release",
        "--version",
        "1.0.0",
        "--artifact",
        "x86_64-unknown-linux-gnu=a",
        "--key",
        "keys/channel.key",
        "--out",
        "release.json",
    ])
    .success();
    let err = sb
        .release_cli(&["verify", "--root", "root.json", "release.json"])
        .failure();
    assert!(
        err.contains("[threshold]") && err.contains("0 valid signature"),
        "{err}"
    );
}

#[test]
fn a_private_key_with_loose_permissions_is_refused() {
    let sb = with_root();
    sb.write("a", b"a");
    std::fs::set_permissions(
        sb.join("keys/release.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    let err = sb
        .release_cli(&[
            "sign-release",
            "--version",
            "1.0.0",
            "--artifact",
            "x86_64-unknown-linux-gnu=a",
            "--key",
            "keys/release.key",
            "--out",
            "release.json",
        ])
        .failure();
    assert!(
        err.contains("[key_permissions]") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!sb.join("release.json").exists(), "nothing written");
}

#[test]
fn threshold_ceremony_collects_signatures_one_key_at_a_time() {
    let sb = with_root();
    let out = sb
        .release_cli(&[
            "init-root",
            "--root-key",
            "keys/root-1.pub",
            "--root-key",
            "keys/root-2.pub",
            "--root-key",
            "keys/root-3.pub",
            "--root-threshold",
            "2",
            "--release-key",
            "keys/release.pub",
            "--channel-key",
            "keys/channel.pub",
            "--key",
            "keys/root-1.key",
            "--out",
            "root-2of3.json",
        ])
        .success();
    assert!(out.contains("not yet valid"), "{out}");
    let err = sb
        .release_cli(&["verify", "--root", "root-2of3.json", "root-2of3.json"])
        .failure();
    assert!(err.contains("[threshold]"), "{err}");

    // Signing twice with the same key does not count twice.
    sb.release_cli(&["sign", "root-2of3.json", "--key", "keys/root-1.key"])
        .success();
    let err = sb
        .release_cli(&["verify", "--root", "root-2of3.json", "root-2of3.json"])
        .failure();
    assert!(err.contains("[threshold]"), "{err}");

    // A duplicated signature entry (same keyid twice) is refused outright.
    edit_json(&sb, "root-2of3.json", |v| {
        let first = v["signatures"][0].clone();
        v["signatures"].as_array_mut().expect("array").push(first);
    });
    let err = sb
        .release_cli(&["verify", "--root", "root-2of3.json", "root-2of3.json"])
        .failure();
    assert!(err.contains("[duplicate_keyid]"), "{err}");
    edit_json(&sb, "root-2of3.json", |v| {
        v["signatures"].as_array_mut().expect("array").pop();
    });

    sb.release_cli(&["sign", "root-2of3.json", "--key", "keys/root-3.key"])
        .success();
    let ok = sb
        .release_cli(&["verify", "--root", "root-2of3.json", "root-2of3.json"])
        .success();
    assert!(ok.contains("root version 1"), "{ok}");
}

#[test]
fn root_rotation_needs_old_and_new_root_keys() {
    let sb = with_root();
    // Only the new key signs: not a valid rotation.
    let out = sb
        .release_cli(&[
            "rotate-root",
            "--root",
            "root.json",
            "--root-key",
            "keys/root-2.pub",
            "--key",
            "keys/root-2.key",
            "--out",
            "root-2.json",
        ])
        .success();
    assert!(out.contains("not yet valid"), "{out}");
    let err = sb
        .release_cli(&["verify", "--root", "root.json", "root-2.json"])
        .failure();
    assert!(err.contains("[threshold]") && err.contains("root"), "{err}");

    // The old root key adds its signature: valid.
    sb.release_cli(&["sign", "root-2.json", "--key", "keys/root-1.key"])
        .success();
    let ok = sb
        .release_cli(&["verify", "--root", "root.json", "root-2.json"])
        .success();
    assert!(ok.contains("valid rotation from version 1"), "{ok}");

    // The new root keeps the release role: a release verifies against it.
    sb.write("a", b"a");
    sign_release(&sb, "1.0.0", "a");
    sb.release_cli(&["verify", "--root", "root-2.json", "release.json"])
        .success();

    // A root that skips a version is refused.
    edit_json(&sb, "root-2.json", |v| v["signed"]["version"] = 3.into());
    let err = sb
        .release_cli(&["verify", "--root", "root.json", "root-2.json"])
        .failure();
    assert!(err.contains("[root_version]"), "{err}");
}

#[test]
fn rollback_and_channel_documents_verify_and_expire() {
    let sb = with_root();
    sb.release_cli(&[
        "sign-rollback",
        "--from",
        "1.2.0",
        "--to",
        "1.1.0",
        "--reason",
        "1.2.0 corrupts thumbnails",
        "--key",
        "keys/release.key",
        "--out",
        "rollback.json",
    ])
    .success();
    let ok = sb
        .release_cli(&["verify", "--root", "root.json", "rollback.json"])
        .success();
    assert!(ok.contains("rollback from 1.2.0 to 1.1.0"), "{ok}");
    let err = sb
        .release_cli(&[
            "verify",
            "--root",
            "root.json",
            "rollback.json",
            "--now",
            "2099-01-01T00:00:00Z",
        ])
        .failure();
    assert!(err.contains("[expired]"), "{err}");
    let err = sb
        .release_cli(&[
            "sign-rollback",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--reason",
            "x",
            "--key",
            "keys/release.key",
            "--out",
            "up.json",
        ])
        .failure();
    assert!(err.contains("only permits moving down"), "{err}");

    sb.write("a", b"a");
    sign_release(&sb, "1.1.0", "a");
    sb.release_cli(&[
        "sign-channel",
        "--channel",
        "stable",
        "--serial",
        "7",
        "--release",
        "release.json",
        "--percent",
        "25",
        "--expires",
        "1h",
        "--key",
        "keys/channel.key",
        "--out",
        "channel.json",
    ])
    .success();
    let ok = sb
        .release_cli(&["verify", "--root", "root.json", "channel.json"])
        .success();
    assert!(
        ok.contains("channel stable serial 7 -> 1.1.0 at 25%"),
        "{ok}"
    );
    let later = manifests::Timestamp::now().plus_secs(2 * 3600).to_string();
    let err = sb
        .release_cli(&[
            "verify",
            "--root",
            "root.json",
            "channel.json",
            "--now",
            &later,
        ])
        .failure();
    assert!(
        err.contains("[expired]") && err.contains("channel"),
        "{err}"
    );
    let ok = sb
        .release_cli(&[
            "verify",
            "--root",
            "root.json",
            "channel.json",
            "--now",
            &later,
            "--allow-expired",
        ])
        .success();
    assert!(ok.starts_with("OK"), "{ok}");

    // A channel statement signed with the release key is not a channel statement.
    sb.release_cli(&[
        "sign-channel",
        "--channel",
        "stable",
        "--serial",
        "8",
        "--release",
        "release.json",
        "--key",
        "keys/release.key",
        "--out",
        "forged.json",
    ])
    .success();
    let err = sb
        .release_cli(&["verify", "--root", "root.json", "forged.json"])
        .failure();
    assert!(err.contains("[threshold]"), "{err}");
}

#[test]
fn unknown_fields_survive_a_round_trip_through_the_cli() {
    let sb = with_root();
    sb.write("a", b"a");
    sign_release(&sb, "1.0.0", "a");
    // A newer producer adds a field; the document is re-signed and still verifies here.
    edit_json(&sb, "release.json", |v| {
        v["signed"]["x-future-field"] = serde_json::json!({"nested": [1, 2.5, "é"]});
    });
    let err = sb
        .release_cli(&["verify", "--root", "root.json", "release.json"])
        .failure();
    assert!(err.contains("[bad_signature]"), "{err}");
    sb.release_cli(&["sign", "release.json", "--key", "keys/release.key"])
        .success();
    sb.release_cli(&["verify", "--root", "root.json", "release.json"])
        .success();
    let text = std::fs::read_to_string(sb.join("release.json")).expect("read");
    assert!(
        text.contains("x-future-field") && text.contains("2.5"),
        "{text}"
    );
}

#[test]
fn inspect_shows_a_document_and_garbage_gets_one_clear_line() {
    let sb = with_root();
    sb.write("a", b"abc");
    sign_release(&sb, "1.0.0", "a");
    let out = sb.release_cli(&["inspect", "release.json"]).success();
    for expected in [
        "type             release",
        "version          1.0.0",
        "3 bytes",
        "not verified",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    let out = sb.release_cli(&["inspect", "root.json"]).success();
    assert!(out.contains("threshold 1 of 1"), "{out}");

    sb.write("garbage.json", b"{\"signed\": 12");
    let err = sb.release_cli(&["inspect", "garbage.json"]).failure();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("garbage.json"), "{err}");
    let err = sb
        .release_cli(&["verify", "--root", "missing.json", "release.json"])
        .failure();
    assert!(
        err.contains("missing.json") && err.contains("[io]"),
        "{err}"
    );
}

/// The one error line of a failed command, which must be led by `[reason]`.
#[track_caller]
fn error_led_by(run: &e2e::Run, reason: &str) -> String {
    let err = run.failure();
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(": note: ")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    let prefix = format!("worker-release: error [{reason}]: ");
    assert!(lines[0].starts_with(&prefix), "led by {prefix:?}: {err}");
    lines[0].to_owned()
}

#[test]
fn sign_release_refuses_typos_a_mislabelled_agent_an_existing_out_and_foreign_keys() {
    let sb = with_root();
    sb.write("artifact.bin", "not an agent\n".repeat(100));
    let sign = |extra: &[&str]| {
        let mut args = vec!["sign-release"];
        args.extend_from_slice(extra);
        sb.release_cli(&args)
    };
    let artifact = |platform: &str, path: &str| format!("{platform}={path}");
    let plain = artifact("x86_64-unknown-linux-gnu", "artifact.bin");
    let key = ["--key", "keys/release.key"];

    // A platform that is no target triple, and a minimum version above the version.
    for platform in [
        "x86-64-unknown-linux-gnu",
        "linux-x86_64",
        "x86_64-unknown-lniux-gnu",
    ] {
        let a = artifact(platform, "artifact.bin");
        let err = error_led_by(
            &sign(&[
                "--version",
                "1.0.0",
                "--artifact",
                &a,
                key[0],
                key[1],
                "--out",
                "r.json",
            ]),
            "usage",
        );
        assert!(
            err.contains(platform) && err.contains("target triple"),
            "{err}"
        );
    }
    let err = error_led_by(
        &sign(&[
            "--version",
            "1.0.0",
            "--minimum-version",
            "1.2.0",
            "--artifact",
            &plain,
            key[0],
            key[1],
            "--out",
            "r.json",
        ]),
        "usage",
    );
    assert!(
        err.contains("--minimum-version 1.2.0 is above --version 1.0.0"),
        "{err}"
    );
    assert!(!sb.join("r.json").exists(), "nothing written");

    // A worker-agent binary carries its version and target: signing it as another is refused,
    // read from the file, never by running it.
    let agent = e2e::bin("worker-agent");
    let agent = agent.to_str().expect("utf-8 path");
    let built = env!("CARGO_PKG_VERSION");
    let native = artifact(manifests::BUILD_PLATFORM, agent);
    let err = error_led_by(
        &sign(&[
            "--version",
            "9.9.9",
            "--artifact",
            &native,
            key[0],
            key[1],
            "--out",
            "r.json",
        ]),
        "artifact_mismatch",
    );
    assert!(
        err.contains(&format!("is version {built}, not --version 9.9.9")),
        "{err}"
    );
    let other = if manifests::BUILD_PLATFORM.starts_with("aarch64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let foreign = artifact(other, agent);
    let err = error_led_by(
        &sign(&[
            "--version",
            built,
            "--artifact",
            &foreign,
            key[0],
            key[1],
            "--out",
            "r.json",
        ]),
        "artifact_mismatch",
    );
    assert!(
        err.contains(&format!("built for {}", manifests::BUILD_PLATFORM)),
        "{err}"
    );
    sign(&[
        "--version",
        built,
        "--artifact",
        &native,
        key[0],
        key[1],
        "--out",
        "r.json",
    ])
    .success();

    // --out is never replaced silently.
    let before = std::fs::read(sb.join("r.json")).expect("release");
    let err = error_led_by(
        &sign(&[
            "--version",
            "2.0.0",
            "--artifact",
            &plain,
            key[0],
            key[1],
            "--out",
            "r.json",
        ]),
        "exists",
    );
    assert!(err.contains("--out r.json exists; pass --force"), "{err}");
    assert_eq!(std::fs::read(sb.join("r.json")).expect("release"), before);
    let run = sign(&[
        "--version",
        "2.0.0",
        "--artifact",
        &plain,
        key[0],
        key[1],
        "--out",
        "r.json",
        "--force",
    ]);
    run.success();
    assert!(
        run.stderr().contains("not a worker-agent binary"),
        "{}",
        run.stderr()
    );
    assert_ne!(std::fs::read(sb.join("r.json")).expect("release"), before);

    // --root: a key outside the release role is refused before anything is signed.
    let err = error_led_by(
        &sign(&[
            "--version",
            "2.0.1",
            "--artifact",
            &plain,
            "--key",
            "keys/channel.key",
            "--root",
            "root.json",
            "--out",
            "r2.json",
        ]),
        "wrong_role",
    );
    assert!(
        err.contains("is not a release key of root version 1"),
        "{err}"
    );
    sign(&[
        "--version",
        "2.0.1",
        "--artifact",
        &plain,
        key[0],
        key[1],
        "--root",
        "root.json",
        "--out",
        "r2.json",
    ])
    .success();
    sb.release_cli(&["verify", "--root", "root.json", "r2.json"])
        .success();

    // A public key given as --key is named as such.
    let err = error_led_by(
        &sign(&[
            "--version",
            "2.0.2",
            "--artifact",
            &plain,
            "--key",
            "keys/release.pub",
            "--out",
            "r3.json",
        ]),
        "wrong_role",
    );
    assert!(
        err.contains("keys/release.pub: this is a public key"),
        "{err}"
    );
}

#[test]
fn every_failure_is_led_by_its_label_and_says_each_cause_once() {
    let sb = Sandbox::new();
    sb.release_cli(&["keygen", "--out", "keys", "--name", "a"])
        .success();
    let err = error_led_by(
        &sb.release_cli(&["keygen", "--out", "keys", "--name", "a"]),
        "io",
    );
    assert_eq!(err.matches("os error 17").count(), 1, "{err}");
    // Failures that are no trust-format error are labelled too.
    let err = error_led_by(
        &sb.release_cli(&["keygen", "--out", "keys", "--name", "a b"]),
        "usage",
    );
    assert!(err.contains("may only contain"), "{err}");
}
