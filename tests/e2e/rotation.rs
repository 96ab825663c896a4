//! Key and root rotations as DEPLOYMENT.md describes them, with the real `worker-release` and
//! `update-server`: channels stay served across restarts with serials that only grow, a release
//! whose key was dropped is halted until it is re-signed, weaker roots need `--allow-weaker`,
//! and the server refuses a channel key that is also an offline key.

use e2e::world::World;
use e2e::{Run, Sandbox};
use manifests::{PrivateKey, Root, Signed};

/// A world with stable at 1.1.0 (10 %) and canary at 1.1.0 (50 %), and an `admin.token` file.
fn world_with_channels() -> World {
    let world = World::new();
    world
        .sandbox
        .write("admin.token", format!("{}\n", world.server.admin_token));
    world.publish_written("1.1.0", "artifacts/worker-agent-1.1.0", b"agent 1.1.0");
    world.server.promote("canary", "1.1.0", 50);
    world.server.promote("stable", "1.1.0", 10);
    world
}

fn cli(world: &World, args: &[&str]) -> Run {
    world.sandbox.release_cli(args)
}

fn admin_cli(world: &World, command: &str, args: &[&str]) -> Run {
    let mut all = vec![
        command,
        "--server",
        &world.server.url,
        "--token-file",
        "admin.token",
    ];
    all.extend_from_slice(args);
    world.sandbox.release_cli(&all)
}

/// The `/latest` answer of `channel` for a worker on 1.0.0.
fn latest(world: &World, channel: &str) -> serde_json::Value {
    let reply = world.server.worker().latest(channel, "1.0.0", "worker-1");
    assert_eq!(reply.status, 200, "latest {channel}: {reply:?}");
    reply.json()
}

fn serial(latest: &serde_json::Value) -> u64 {
    latest["channel"]["signed"]["serial"]
        .as_u64()
        .unwrap_or_else(|| panic!("no channel statement served: {latest}"))
}

fn signer(latest: &serde_json::Value) -> String {
    latest["channel"]["signatures"][0]["keyid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn keyid(world: &World, name: &str) -> String {
    PrivateKey::load(&world.sandbox.join(&format!("keys/{name}.key")))
        .expect("key")
        .keyid()
}

/// `worker-release verify --root ROOT` of what `/latest` serves for `channel`, as an agent
/// trusting `root` checks it.
fn verify_served(world: &World, root: &str, latest: &serde_json::Value, channel: &str) {
    let path = format!("served-{channel}.json");
    world.sandbox.write(&path, latest["channel"].to_string());
    cli(world, &["verify", "--root", root, &path]).success();
}

fn promote(world: &World, channel: &str, version: &str, percent: &str) -> Run {
    let mut args = vec![
        "--channel",
        channel,
        "--version",
        version,
        "--percent",
        percent,
    ];
    if channel == "stable" {
        args.extend(["--override", "--reason", "rotation test"]);
    }
    admin_cli(world, "promote", &args)
}

fn root_doc(world: &World, path: &str) -> Root {
    Signed::<Root>::load(&world.sandbox.join(path))
        .expect("root")
        .signed
}

#[test]
fn a_channel_key_rotation_keeps_every_channel_served_and_serials_growing_across_restarts() {
    let mut world = world_with_channels();
    let before = serial(&latest(&world, "stable"));

    // DEPLOYMENT.md: root N+1 whose channel role holds the new key, then restart the server
    // with the new root and the new channel key.
    cli(&world, &["keygen", "--out", "keys", "--name", "channel-2"]).success();
    cli(
        &world,
        &[
            "rotate-root",
            "--root",
            "root.json",
            "--channel-key",
            "keys/channel-2.pub",
            "--remove-key",
            "keys/channel.pub",
            "--allow-weaker",
            "--key",
            "keys/root.key",
            "--out",
            "root-2.json",
        ],
    )
    .success();
    let root_2 = root_doc(&world, "root-2.json");
    assert_eq!(
        root_2.roles.channel.keyids,
        vec![keyid(&world, "channel-2")]
    );
    let (root_path, key_path) = (
        world.sandbox.join("root-2.json"),
        world.sandbox.join("keys/channel-2.key"),
    );
    let refused = world.server.refused_start(&[
        ("--root", &root_path.to_string_lossy()),
        ("--channel-key", &key_path.to_string_lossy()),
    ]);
    assert!(
        refused.contains("weakens trust")
            && refused.contains("channel: key")
            && refused.contains("--allow-weaker"),
        "a root that drops the old channel key needs --allow-weaker at start: {refused}"
    );
    world.server.restart_with(&[
        ("--allow-weaker", ""),
        ("--root", &root_path.to_string_lossy()),
        ("--channel-key", &key_path.to_string_lossy()),
    ]);

    for channel in ["stable", "canary"] {
        let served = latest(&world, channel);
        assert!(
            serial(&served) > before,
            "{channel} re-signed at a higher serial: {served}"
        );
        assert_eq!(signer(&served), keyid(&world, "channel-2"), "{channel}");
        assert_eq!(served["root_version"], 2);
        verify_served(&world, "root-2.json", &served, channel);
    }
    let stable = latest(&world, "stable");
    assert_eq!(stable["channel"]["signed"]["rollout"]["percent"], 10);

    let resigned = serial(&stable);
    promote(&world, "stable", "1.1.0", "25").success();
    let promoted = serial(&latest(&world, "stable"));
    assert_eq!(promoted, resigned + 1, "promote after the rotation");

    world.server.crash_and_restart();
    let again = latest(&world, "stable");
    assert_eq!(serial(&again), promoted, "a plain restart re-signs nothing");
    assert_eq!(again["channel"]["signed"]["rollout"]["percent"], 25);
    promote(&world, "stable", "1.1.0", "50").success();
    assert_eq!(serial(&latest(&world, "stable")), promoted + 1);
    let audit = admin_cli(&world, "audit", &["--json"]).success();
    assert!(
        audit.contains("re-signed with the current channel key"),
        "the re-signing is audited: {audit}"
    );
}

#[test]
fn a_release_key_rotation_halts_the_channels_of_unresigned_releases_until_they_are_resigned() {
    let mut world = world_with_channels();
    cli(&world, &["keygen", "--out", "keys", "--name", "release-2"]).success();
    cli(
        &world,
        &[
            "rotate-root",
            "--root",
            "root.json",
            "--release-key",
            "keys/release-2.pub",
            "--remove-key",
            "keys/release.pub",
            "--allow-weaker",
            "--key",
            "keys/root.key",
            "--out",
            "root-2.json",
        ],
    )
    .success();
    // DEPLOYMENT.md: a release-key rotation is published live.
    let refused = admin_cli(&world, "publish-root", &["root-2.json"]).failure();
    assert!(
        refused.contains("[weaker_root]") && refused.contains("release: key"),
        "a root that drops a release key needs --allow-weaker: {refused}"
    );
    admin_cli(&world, "publish-root", &["--allow-weaker", "root-2.json"]).success();
    world.server.crash_and_restart();

    let stable = latest(&world, "stable");
    assert_eq!(stable["channel"]["signed"]["halted"], true, "{stable}");
    assert_eq!(stable["root_version"], 2);
    verify_served(&world, "root-2.json", &stable, "stable");
    let status = admin_cli(&world, "status", &[]).success();
    assert!(
        status.contains("untrusted release 1.1.0") && status.contains("re-sign it"),
        "status names the release to re-sign: {status}"
    );
    let refused = promote(&world, "stable", "1.1.0", "20").failure();
    assert!(refused.contains("[untrusted_release]"), "{refused}");

    // The release engineer re-signs the same manifest with the new key and publishes it again
    // (the file Trust::sign_release wrote when 1.1.0 was published).
    let halted_serial = serial(&stable);
    cli(
        &world,
        &["sign", "release-1.1.0.json", "--key", "keys/release-2.key"],
    )
    .success();
    let published = admin_cli(&world, "publish", &["release-1.1.0.json"]).success();
    assert!(published.contains("re-signed"), "{published}");
    promote(&world, "stable", "1.1.0", "20").success();
    let resumed = latest(&world, "stable");
    assert_eq!(serial(&resumed), halted_serial + 1);
    assert_eq!(resumed["channel"]["signed"]["halted"], false);
    world.server.crash_and_restart();
    let after = latest(&world, "stable");
    assert_eq!(serial(&after), halted_serial + 1);
    assert_eq!(after["channel"]["signed"]["halted"], false);
    verify_served(&world, "root-2.json", &after, "stable");
    cli(
        &world,
        &["verify", "--root", "root-2.json", "release-1.1.0.json"],
    )
    .success();
}

/// A sandbox with keys root-1..3, release and channel, and the README's root: root-1 and
/// root-2, 2 of 2.
fn two_of_two_root() -> Sandbox {
    let sb = Sandbox::new();
    for name in ["root-1", "root-2", "root-3", "release", "channel"] {
        sb.release_cli(&["keygen", "--out", "keys", "--name", name])
            .success();
    }
    sb.release_cli(&[
        "init-root",
        "--root-key",
        "keys/root-1.pub",
        "--root-key",
        "keys/root-2.pub",
        "--root-threshold",
        "2",
        "--release-key",
        "keys/release.pub",
        "--channel-key",
        "keys/channel.pub",
        "--key",
        "keys/root-1.key",
        "--key",
        "keys/root-2.key",
        "--out",
        "root.json",
    ])
    .success();
    sb
}

fn sandbox_root(sb: &Sandbox, path: &str) -> Root {
    Signed::<Root>::load(&sb.join(path)).expect("root").signed
}

fn sandbox_keyid(sb: &Sandbox, name: &str) -> String {
    PrivateKey::load(&sb.join(&format!("keys/{name}.key")))
        .expect("key")
        .keyid()
}

#[test]
fn rotate_root_keeps_keys_and_thresholds_and_needs_allow_weaker_to_lower_them() {
    let sb = two_of_two_root();
    let signers = ["--key", "keys/root-1.key", "--key", "keys/root-2.key"];
    let rotate = |extra: &[&str]| {
        let mut args = vec!["rotate-root"];
        args.extend_from_slice(extra);
        sb.release_cli(&args)
    };

    // The README's rotation adds root-3: the root stays 2 of N, the other roles unchanged.
    let dry = rotate(&[
        "--root",
        "root.json",
        "--root-key",
        "keys/root-3.pub",
        "--dry-run",
    ])
    .success();
    let root_3 = sandbox_keyid(&sb, "root-3");
    assert!(
        dry.contains(&format!("root: key {root_3} added"))
            && dry.contains("dry run: nothing written")
            && !dry.contains("weaker"),
        "{dry}"
    );
    assert!(!sb.join("root-2.json").exists(), "a dry run writes nothing");
    let mut args = vec!["--root", "root.json", "--root-key", "keys/root-3.pub"];
    args.extend_from_slice(&signers);
    args.extend(["--out", "root-2.json"]);
    let out = rotate(&args).success();
    assert!(out.contains("rotation from 1 verified"), "{out}");
    let (old, new) = (
        sandbox_root(&sb, "root.json"),
        sandbox_root(&sb, "root-2.json"),
    );
    assert_eq!(new.roles.root.threshold, 2, "the threshold is kept");
    assert_eq!(new.roles.root.keyids.len(), 3);
    assert_eq!(new.roles.release, old.roles.release);
    assert_eq!(new.roles.channel, old.roles.channel);

    // Lowering a threshold is refused without --allow-weaker, saying what changes.
    let mut args = vec!["--root", "root-2.json", "--root-threshold", "1"];
    args.extend_from_slice(&signers);
    args.extend(["--out", "root-3.json"]);
    let err = rotate(&args).failure();
    assert!(
        err.contains("root: threshold 2 -> 1 (lowered)") && err.contains("--allow-weaker"),
        "{err}"
    );
    assert!(!sb.join("root-3.json").exists());

    // So is removing a key; the dry run shows it as weaker.
    let dry = rotate(&[
        "--root",
        "root-2.json",
        "--remove-key",
        "keys/root-3.pub",
        "--dry-run",
    ])
    .success();
    assert!(
        dry.contains(&format!("root: key {root_3} removed (weaker)"))
            && dry.contains("writing it needs --allow-weaker"),
        "{dry}"
    );
    let mut args = vec!["--root", "root-2.json", "--remove-key", "keys/root-3.pub"];
    args.extend_from_slice(&signers);
    args.extend(["--out", "root-3.json"]);
    let err = rotate(&args).failure();
    assert!(
        err.contains(&format!("root: key {root_3} removed")) && err.contains("--allow-weaker"),
        "{err}"
    );
    assert!(!sb.join("root-3.json").exists());

    // With --allow-weaker it is written and is a valid rotation.
    args.extend(["--root-threshold", "1", "--allow-weaker"]);
    let out = rotate(&args).success();
    assert!(
        out.contains("(weaker)") && out.contains("verified"),
        "{out}"
    );
    let weaker = sandbox_root(&sb, "root-3.json");
    assert_eq!(weaker.roles.root.threshold, 1);
    assert_eq!(weaker.roles.root.keyids.len(), 2);
    assert!(
        !weaker.keys.contains_key(&root_3),
        "an unused key leaves the root"
    );
    let ok = sb
        .release_cli(&["verify", "--root", "root-2.json", "root-3.json"])
        .success();
    assert!(ok.contains("valid rotation"), "{ok}");
}

#[test]
fn the_server_refuses_a_weaker_root_unless_publish_root_allows_it() {
    let world = world_with_channels();
    cli(&world, &["keygen", "--out", "keys", "--name", "root-2"]).success();
    let stronger = [
        "rotate-root",
        "--root",
        "root.json",
        "--root-key",
        "keys/root-2.pub",
        "--root-threshold",
        "2",
        "--key",
        "keys/root.key",
        "--key",
        "keys/root-2.key",
        "--out",
        "root-2.json",
    ];
    cli(&world, &stronger).success();
    admin_cli(&world, "publish-root", &["root-2.json"]).success();
    let weaker = [
        "rotate-root",
        "--root",
        "root-2.json",
        "--remove-key",
        "keys/root-2.pub",
        "--root-threshold",
        "1",
        "--allow-weaker",
        "--key",
        "keys/root.key",
        "--key",
        "keys/root-2.key",
        "--out",
        "root-3.json",
    ];
    cli(&world, &weaker).success();

    let refused = admin_cli(&world, "publish-root", &["root-3.json"]).failure();
    assert!(
        refused.contains("[weaker_root]")
            && refused.contains("root: threshold 2 -> 1 (lowered)")
            && refused.contains("--allow-weaker"),
        "{refused}"
    );
    assert_eq!(latest(&world, "stable")["root_version"], 2);

    admin_cli(&world, "publish-root", &["--allow-weaker", "root-3.json"]).success();
    let stable = latest(&world, "stable");
    assert_eq!(stable["root_version"], 3);
    verify_served(&world, "root-3.json", &stable, "stable");
    let audit = admin_cli(&world, "audit", &["--json"]).success();
    assert!(audit.contains("weaker (allowed)"), "{audit}");
}

#[test]
fn the_server_refuses_a_channel_key_that_is_also_a_root_or_release_key() {
    let world = world_with_channels();
    // Root 2 makes the channel key a release key too: refused live ...
    cli(
        &world,
        &[
            "rotate-root",
            "--root",
            "root.json",
            "--release-key",
            "keys/channel.pub",
            "--key",
            "keys/root.key",
            "--out",
            "root-2.json",
        ],
    )
    .success();
    let refused = admin_cli(&world, "publish-root", &["root-2.json"]).failure();
    assert!(
        refused.contains("[channel_key]")
            && refused.contains("also a key of the release role of root version 2")
            && refused.contains("offline key"),
        "{refused}"
    );
    assert_eq!(latest(&world, "stable")["root_version"], 1);
    // ... and at start.
    let root_2 = world.sandbox.join("root-2.json");
    let refused = world
        .server
        .refused_start(&[("--root", &root_2.to_string_lossy())]);
    assert!(
        refused.contains("also a key of the release role of root version 2")
            && refused.contains("offline key"),
        "{refused}"
    );

    // A root 1 whose root role holds the channel key: a new server refuses to start with it.
    cli(
        &world,
        &[
            "init-root",
            "--root-key",
            "keys/channel.pub",
            "--release-key",
            "keys/release.pub",
            "--channel-key",
            "keys/channel.pub",
            "--key",
            "keys/channel.key",
            "--out",
            "shared-root.json",
        ],
    )
    .success();
    let (data_dir, root) = (
        world.sandbox.join("other-server-data"),
        world.sandbox.join("shared-root.json"),
    );
    let refused = world.server.refused_start(&[
        ("--data-dir", &data_dir.to_string_lossy()),
        ("--root", &root.to_string_lossy()),
    ]);
    assert!(
        refused.contains("also a key of the root role of root version 1"),
        "{refused}"
    );
}

#[test]
fn publish_root_again_is_already_published_and_another_root_of_that_version_is_refused() {
    let world = world_with_channels();
    let rotate = |expires: &str, out: &str| {
        cli(
            &world,
            &[
                "rotate-root",
                "--root",
                "root.json",
                "--expires",
                expires,
                "--key",
                "keys/root.key",
                "--out",
                out,
            ],
        )
        .success()
    };
    rotate("300d", "root-2.json");
    let first = admin_cli(&world, "publish-root", &["root-2.json"]).success();
    assert!(first.contains("root version 2: published"), "{first}");
    // A retried publish (a script run twice): success, said so, nothing changes.
    let stable = latest(&world, "stable");
    let again = admin_cli(&world, "publish-root", &["root-2.json"]).success();
    assert!(
        again.contains("root version 2: already published"),
        "{again}"
    );
    assert_eq!(latest(&world, "stable"), stable, "nothing re-signed");
    // The version a trusted root already has, with other content: refused, with the reason.
    rotate("200d", "root-2-other.json");
    let refused = admin_cli(&world, "publish-root", &["root-2-other.json"]).failure();
    assert!(
        refused.contains("[root_conflict]")
            && refused.contains("root version 2 is already published with other content")
            && refused.contains("(409)"),
        "{refused}"
    );
    let served = world.server.worker().get("/api/worker-updates/root/2.json");
    let served: Signed<Root> = Signed::from_slice(&served.body).expect("root 2");
    assert_eq!(
        served.signed,
        root_doc(&world, "root-2.json"),
        "root 2 kept"
    );
    let audit = admin_cli(&world, "audit", &["--json", "--kind", "root"]).success();
    assert_eq!(
        audit.matches("root rotated from version 1 to 2").count(),
        1,
        "one rotation in the audit trail: {audit}"
    );
}
