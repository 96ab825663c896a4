//! Key and root rotations as DEPLOYMENT.md describes them, with the real `worker-release` and
//! `update-server`: channels stay served across restarts with serials that only grow, a release
//! whose key was dropped is halted until it is re-signed, weaker roots need `--allow-weaker`,
//! and the server refuses a channel key that is also an offline key.

use e2e::world::World;
use e2e::Run;
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
    world.server.restart_with(&[
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
            "--key",
            "keys/root.key",
            "--out",
            "root-2.json",
        ],
    )
    .success();
    // DEPLOYMENT.md: a release-key rotation is published live.
    admin_cli(&world, "publish-root", &["root-2.json"]).success();
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
