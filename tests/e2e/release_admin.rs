//! `worker-release` server commands (publish, promote, halt, resume, rollback, status, audit)
//! against a real `update-server`: real keys, real HTTP, the admin token in a file.

use std::net::TcpListener;
use std::path::Path;

use e2e::fleet::PLATFORM;
use e2e::world::World;
use e2e::{Run, Sandbox};

/// A world whose admin token is in `admin.token` for the CLI.
fn world() -> World {
    let world = World::new();
    world
        .sandbox
        .write("admin.token", format!("{}\n", world.server.admin_token));
    world
}

/// The `worker-release` commands these tests run in the [`World`].
trait ReleaseCli {
    /// `worker-release COMMAND --server URL --token-file TOKEN_FILE ARGS...`
    fn cli_with_token(&self, command: &str, token_file: &str, args: &[&str]) -> Run;
    /// A server command with the admin token.
    fn cli(&self, command: &str, args: &[&str]) -> Run;
    /// The release key file, as a CLI argument.
    fn release_key(&self) -> String;
    /// Writes a distinct artifact for `version` and signs `release-VERSION.json` for it with the
    /// CLI and the trust's release key. Returns (release file, artifact file), sandbox-relative.
    fn sign_release(&self, version: &str) -> (String, String);
    /// Signs (with the CLI) and publishes (through the fixture's API client) `version`.
    fn published(&self, version: &str);
    /// `worker-release status`, which must write nothing to stderr.
    fn status(&self) -> String;
}

impl ReleaseCli for World {
    fn cli_with_token(&self, command: &str, token_file: &str, args: &[&str]) -> Run {
        let mut all = vec![
            command,
            "--server",
            &self.server.url,
            "--token-file",
            token_file,
        ];
        all.extend_from_slice(args);
        self.sandbox.release_cli(&all)
    }

    fn cli(&self, command: &str, args: &[&str]) -> Run {
        self.cli_with_token(command, "admin.token", args)
    }

    fn release_key(&self) -> String {
        path_arg(&self.trust.release_key_path)
    }

    fn sign_release(&self, version: &str) -> (String, String) {
        let artifact = format!("artifacts/worker-agent-{version}");
        self.sandbox.write(
            &artifact,
            format!("#!/bin/sh\necho {version}\n").repeat(3000),
        );
        let release = format!("release-{version}.json");
        let out = self
            .sandbox
            .release_cli(&[
                "sign-release",
                "--version",
                version,
                "--artifact",
                &format!("{PLATFORM}={artifact}"),
                "--notes",
                &format!("release {version} for the encoders"),
                "--key",
                &self.release_key(),
                "--out",
                &release,
            ])
            .success();
        assert!(
            out.starts_with(&format!("wrote {release}: "))
                && out.contains(&format!(" {version} (1 artifact(s)), manifest_sha256 ")),
            "{out}"
        );
        (release, artifact)
    }

    fn published(&self, version: &str) {
        let (release, artifact) = self.sign_release(version);
        let doc = manifests::Signed::<manifests::Release>::load(&self.sandbox.join(&release))
            .expect("signed release");
        self.server.publish(&doc, &[&self.sandbox.join(&artifact)]);
    }

    fn status(&self) -> String {
        let run = self.cli("status", &[]);
        let out = run.success();
        assert_eq!(run.stderr(), "", "status writes nothing to stderr");
        out
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The cells of `channel`'s row in the "channels" table of `worker-release status` (cells are
/// separated by at least two spaces; a cell holds at most single spaces).
#[track_caller]
fn channel_row(status: &str, channel: &str) -> Vec<String> {
    let section: Vec<&str> = status
        .lines()
        .skip_while(|line| *line != "channels")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(
        cells(section.first().copied().unwrap_or_default()),
        [
            "CHANNEL",
            "VERSION",
            "ROLLOUT",
            "HALTED",
            "SERIAL",
            "EXPIRES IN"
        ],
        "{status}"
    );
    let rows: Vec<Vec<String>> = section
        .iter()
        .map(|line| cells(line))
        .filter(|row| row.first().map(String::as_str) == Some(channel))
        .collect();
    assert_eq!(rows.len(), 1, "one row for {channel}:\n{status}");
    rows.into_iter().next().unwrap_or_default()
}

fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The audit table's rows (newest first) as cells: AT, KIND, ACTOR, CHANNEL, VERSION, DETAIL.
#[track_caller]
fn audit_rows(audit: &str) -> Vec<Vec<String>> {
    let mut lines = audit.lines();
    assert_eq!(
        cells(lines.next().unwrap_or_default()),
        ["AT", "KIND", "ACTOR", "CHANNEL", "VERSION", "DETAIL"],
        "{audit}"
    );
    lines.map(cells).collect()
}

#[track_caller]
fn assert_exit_code(run: &Run, code: i32) {
    assert_eq!(
        run.output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout(),
        run.stderr()
    );
}

/// The one `worker-release: error` line of a failed command.
#[track_caller]
fn error_line(run: &Run) -> String {
    let err = run.failure();
    assert_exit_code(run, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("worker-release: error"), "{err}");
    lines[0].to_owned()
}

#[test]
fn release_engineer_signs_publishes_promotes_overrides_and_reads_status_and_audit() {
    let w = world();
    let (release, artifact) = w.sign_release("1.1.0");
    let size = std::fs::metadata(w.sandbox.join(&artifact))
        .expect("artifact")
        .len();

    // Publish: the release, then its artifact, then the completeness as the server sees it.
    let run = w.cli("publish", &[&release, "--artifact", &artifact]);
    let out = run.success();
    assert_eq!(run.stderr(), "", "no warning for a loopback server");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("release 1.1.0: published (manifest_sha256 ")
            && lines[0].ends_with(')'),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!("artifact {PLATFORM}: stored ({artifact}, {size} bytes)")
    );
    assert_eq!(
        lines[2],
        "release 1.1.0 is complete: all 1 artifact(s) are stored"
    );
    let manifest_sha = lines[0]
        .trim_start_matches("release 1.1.0: published (manifest_sha256 ")
        .trim_end_matches(')')
        .to_owned();
    assert_eq!(manifest_sha.len(), 64, "{out}");

    // Publishing again changes nothing and says so.
    let out = w
        .cli("publish", &[&release, "--artifact", &artifact])
        .success();
    assert_eq!(
        out,
        format!(
            "release 1.1.0: already published, identical (manifest_sha256 {manifest_sha})\n\
             artifact {PLATFORM}: already stored ({artifact}, {size} bytes)\n\
             release 1.1.0 is complete: all 1 artifact(s) are stored\n"
        )
    );

    // Canary at 10%: the answer is the channel's new summary.
    let out = w
        .cli(
            "promote",
            &[
                "--channel",
                "canary",
                "--version",
                "1.1.0",
                "--percent",
                "10",
            ],
        )
        .success();
    assert!(out.starts_with("promote canary 1.1.0: done\n"), "{out}");
    let row = out
        .lines()
        .map(cells)
        .find(|row| row.first().map(String::as_str) == Some("canary"))
        .unwrap_or_else(|| panic!("no canary row: {out}"));
    assert_eq!(row[1..5], ["1.1.0", "10%", "no", "1"], "{out}");

    // Stable is gated by the canary soak: refused, with the reason label first.
    let run = w.cli(
        "promote",
        &[
            "--channel",
            "stable",
            "--version",
            "1.1.0",
            "--percent",
            "100",
        ],
    );
    let err = error_line(&run);
    assert!(
        err.starts_with(
            "worker-release: error [soak]: promote stable 1.1.0: refused by server (409): "
        ),
        "{err}"
    );
    assert!(err.contains("--override --reason"), "{err}");
    assert_eq!(
        run.stdout(),
        "",
        "nothing printed as done: {}",
        run.stdout()
    );

    // --override without --reason is a usage error; nothing is sent.
    let run = w.cli(
        "promote",
        &["--channel", "stable", "--version", "1.1.0", "--override"],
    );
    let err = run.failure();
    assert_exit_code(&run, 2);
    assert!(err.contains("--reason"), "{err}");

    let reason = "CVE-2026-0001 fix, canary skipped";
    let out = w
        .cli(
            "promote",
            &[
                "--channel",
                "stable",
                "--version",
                "1.1.0",
                "--percent",
                "100",
                "--override",
                "--reason",
                reason,
            ],
        )
        .success();
    assert!(out.starts_with("promote stable 1.1.0: done\n"), "{out}");

    // Status names both channels with their version and rollout.
    let status = w.status();
    let canary = channel_row(&status, "canary");
    assert_eq!(canary[1..4], ["1.1.0", "10%", "no"], "{status}");
    let stable = channel_row(&status, "stable");
    assert_eq!(stable[1..4], ["1.1.0", "100%", "no"], "{status}");
    for row in [&canary, &stable] {
        assert_eq!(row.len(), 6, "{status}");
        // Statements are signed for 24 hours: just under, or exactly that within the same second.
        assert!(
            row[5] == "23h 59m" || row[5] == "1d 0h",
            "expires in 24h: {status}"
        );
    }
    assert!(
        status.contains("\nfleet by version\n  (none)\n"),
        "{status}"
    );
    assert!(
        status.contains("\nfailures in the last hour\n  (none)\n"),
        "{status}"
    );
    assert!(
        status.ends_with("\ntotal workers: 0\nroot version: 1\n"),
        "{status}"
    );

    // The JSON form carries the same.
    let json: serde_json::Value =
        serde_json::from_str(&w.cli("status", &["--json"]).success()).expect("status --json");
    let channels = json["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), 2, "{json}");

    // The audit trail, newest first: the override with its reason, the canary promotion, the
    // publication.
    let run = w.cli("audit", &[]);
    let audit = run.success();
    let rows = audit_rows(&audit);
    let find = |kind: &str, channel: &str| {
        rows.iter()
            .position(|row| row.get(1).map(String::as_str) == Some(kind) && row[3] == channel)
            .unwrap_or_else(|| panic!("no {kind} {channel} entry:\n{audit}"))
    };
    let (overridden, canary, publish) = (
        find("promote", "stable"),
        find("promote", "canary"),
        find("publish", "-"),
    );
    assert!(
        overridden < canary && canary < publish,
        "newest first:\n{audit}"
    );
    assert_eq!(
        rows[overridden][4..],
        [
            "1.1.0".to_owned(),
            format!("serial 1: 1.1.0 at 100% (gate overridden): {reason}")
        ],
        "{audit}"
    );
    assert_eq!(
        rows[canary][4..],
        ["1.1.0", "serial 1: 1.1.0 at 10%"],
        "{audit}"
    );
    assert_eq!(
        rows[publish][4..],
        ["1.1.0".to_owned(), format!("manifest {manifest_sha}")],
        "{audit}"
    );
    for row in [&rows[overridden], &rows[canary], &rows[publish]] {
        assert_eq!(
            row[2], "ops",
            "the admin token's name is the actor:\n{audit}"
        );
    }
    // --limit keeps the newest.
    let newest = audit_rows(&w.cli("audit", &["--limit", "1"]).success());
    assert_eq!(newest, rows[..1], "{audit}");
}

#[test]
fn halt_shows_the_reason_in_status_and_resume_clears_it() {
    let w = world();
    w.published("1.4.0");
    w.server.promote("canary", "1.4.0", 50);

    let out = w
        .cli(
            "halt",
            &["--channel", "canary", "--reason", "bad thumbnails"],
        )
        .success();
    assert!(out.starts_with("halt canary: done\n"), "{out}");
    assert!(out.contains("  yes: bad thumbnails  "), "{out}");

    let row = channel_row(&w.status(), "canary");
    assert_eq!(row[1..4], ["1.4.0", "50%", "yes: bad thumbnails"]);
    let halted_serial: u64 = row[4].parse().expect("serial");

    // A halt needs a reason: a blank one is a usage error.
    let run = w.cli("halt", &["--channel", "canary", "--reason", "  "]);
    let err = run.failure();
    assert_exit_code(&run, 2);
    assert!(err.contains("must not be empty"), "{err}");

    // Halting a channel that was never created is the server's 404.
    let err = error_line(&w.cli("halt", &["--channel", "beta", "--reason", "typo"]));
    assert!(
        err.starts_with(
            "worker-release: error [unknown_channel]: halt beta: refused by server (404): "
        ),
        "{err}"
    );

    let out = w
        .cli(
            "resume",
            &["--channel", "canary", "--reason", "thumbnailer fixed"],
        )
        .success();
    assert!(out.starts_with("resume canary: done\n"), "{out}");
    let row = channel_row(&w.status(), "canary");
    assert_eq!(row[1..4], ["1.4.0", "50%", "no"]);
    let resumed_serial: u64 = row[4].parse().expect("serial");
    assert!(resumed_serial > halted_serial, "a new statement is signed");

    let audit = w.cli("audit", &["--limit", "2"]).success();
    let rows = audit_rows(&audit);
    assert_eq!(rows.len(), 2, "{audit}");
    assert_eq!(
        (rows[0][1].as_str(), rows[0][3].as_str()),
        ("resume", "canary"),
        "{audit}"
    );
    assert!(audit.contains("thumbnailer fixed"), "{audit}");
    assert_eq!(
        (rows[1][1].as_str(), rows[1][3].as_str()),
        ("halt", "canary"),
        "{audit}"
    );
    assert!(audit.contains("bad thumbnails"), "{audit}");
}

#[test]
fn resume_needs_a_reason_and_a_halted_channel() {
    let w = world();
    w.published("1.4.0");
    w.server.promote("canary", "1.4.0", 50);
    let serial = |w: &World| -> u64 {
        channel_row(&w.status(), "canary")[4]
            .parse()
            .expect("serial")
    };
    let before = serial(&w);

    // No reason: a usage error (exit 2), nothing sent.
    let run = w.cli("resume", &["--channel", "canary"]);
    let err = run.failure();
    assert_exit_code(&run, 2);
    assert!(err.contains("--reason"), "{err}");
    let run = w.cli("resume", &["--channel", "canary", "--reason", " "]);
    assert_exit_code(&run, 2);

    // A channel that is not halted: the server refuses, and signs no new statement.
    let err = error_line(&w.cli("resume", &["--channel", "canary", "--reason", "all good"]));
    assert!(
        err.starts_with(
            "worker-release: error [not_halted]: resume canary: refused by server (409): "
        ) && err.contains("not halted"),
        "{err}"
    );
    assert_eq!(serial(&w), before, "no statement signed for nothing");

    w.cli(
        "halt",
        &["--channel", "canary", "--reason", "bad thumbnails"],
    )
    .success();
    let halted = serial(&w);
    // The admin API itself refuses a resume without a reason (not only the CLI): an empty, a
    // blank and a missing reason are each 400 missing_reason, and the channel stays halted.
    let admin = w.server.admin();
    for body in [
        serde_json::json!({"reason": ""}),
        serde_json::json!({"reason": "  "}),
        serde_json::json!({}),
    ] {
        let reply = admin.post_json("/api/admin/channels/canary/resume", &body);
        assert_eq!(
            (reply.status, reply.json()["reason"].as_str()),
            (400, Some("missing_reason")),
            "{body}: {}",
            reply.text()
        );
        assert!(reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("reason")));
    }
    assert_eq!(channel_row(&w.status(), "canary")[3], "yes: bad thumbnails");
    assert_eq!(serial(&w), halted, "a refused resume signs nothing");
    w.cli("resume", &["--channel", "canary", "--reason", "fixed"])
        .success();
    assert_eq!(channel_row(&w.status(), "canary")[3], "no");
}

#[test]
fn a_token_file_in_the_servers_name_equals_token_format_is_accepted() {
    let w = world();
    w.sandbox.write(
        "admins.tokens",
        format!(
            "# admins, as update-server --admin-token-file reads them\nrelease-eng={}\n",
            w.server.admin_token
        ),
    );
    let out = w.cli_with_token("status", "admins.tokens", &[]).success();
    assert!(out.contains("channel"), "{out}");
}

#[test]
fn rollback_with_a_directive_signed_by_the_cli_moves_the_channel_down() {
    let w = world();
    w.published("1.0.0");
    w.published("1.1.0");
    w.server.promote("stable", "1.1.0", 25);
    assert_eq!(channel_row(&w.status(), "stable")[1..3], ["1.1.0", "25%"]);

    let out = w
        .sandbox
        .release_cli(&[
            "sign-rollback",
            "--from",
            "1.1.0",
            "--to",
            "1.0.0",
            "--reason",
            "1.1.0 breaks studio exports",
            "--key",
            &w.release_key(),
            "--out",
            "rollback.json",
        ])
        .success();
    assert!(
        out.starts_with("wrote rollback.json: rollback to 1.0.0, expires "),
        "{out}"
    );

    // A directive signed by a key outside the release role is refused by the server.
    w.sandbox
        .release_cli(&[
            "sign-rollback",
            "--from",
            "1.1.0",
            "--to",
            "1.0.0",
            "--reason",
            "forged",
            "--key",
            &path_arg(&w.trust.channel_key_path),
            "--out",
            "forged.json",
        ])
        .success();
    let err = error_line(&w.cli(
        "rollback",
        &["--channel", "stable", "--directive", "forged.json"],
    ));
    assert!(
        err.starts_with(
            "worker-release: error [threshold]: rollback stable to 1.0.0: refused by server (422): "
        ),
        "{err}"
    );
    assert_eq!(
        channel_row(&w.status(), "stable")[1..3],
        ["1.1.0", "25%"],
        "a refused rollback changes nothing"
    );

    let out = w
        .cli(
            "rollback",
            &["--channel", "stable", "--directive", "rollback.json"],
        )
        .success();
    assert!(out.starts_with("rollback stable to 1.0.0: done\n"), "{out}");
    assert!(out.contains("  1.0.0 (rollback)  100%  "), "{out}");

    let row = channel_row(&w.status(), "stable");
    assert_eq!(row[1..4], ["1.0.0 (rollback)", "100%", "no"]);

    // Without --reason the audit keeps the directive's own reason.
    let audit = w.cli("audit", &["--limit", "1"]).success();
    let rows = audit_rows(&audit);
    assert_eq!(
        rows[0][1..],
        [
            "rollback",
            "ops",
            "stable",
            "1.0.0",
            "serial 2: to 1.0.0 for agents on 1.1.0: 1.1.0 breaks studio exports"
        ],
        "{audit}"
    );
}

#[test]
fn refusals_name_the_reason_label_and_the_status_code() {
    let w = world();
    let (release, artifact) = w.sign_release("2.0.0");

    // Tampered after signing: the server refuses it, and nothing was uploaded.
    let path = w.sandbox.join(&release);
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    doc["signed"]["notes"] = "now with a backdoor".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
    let run = w.cli("publish", &[&release, "--artifact", &artifact]);
    let err = error_line(&run);
    assert!(
        err.starts_with(
            "worker-release: error [bad_signature]: publish release 2.0.0: refused by server (422): "
        ),
        "{err}"
    );
    assert_eq!(run.stdout(), "");
    let listing = w.server.admin().get("/api/admin/releases").json();
    assert_eq!(listing["releases"], serde_json::json!([]), "{listing}");

    // A file that is not an artifact of the release: refused before anything is sent.
    let (release, artifact) = w.sign_release("2.0.1");
    w.sandbox.write("stranger.bin", b"not the artifact");
    let run = w.cli("publish", &[&release, "--artifact", "stranger.bin"]);
    let err = error_line(&run);
    assert!(
        err.contains("--artifact stranger.bin: sha256 ")
            && err.contains("is not an artifact or delta of release 2.0.1"),
        "{err}"
    );
    let listing = w.server.admin().get("/api/admin/releases").json();
    assert_eq!(listing["releases"], serde_json::json!([]), "{listing}");

    // Published without its artifact: incomplete, with the command to finish it.
    let out = w.cli("publish", &[&release]).success();
    assert!(
        out.contains("release 2.0.1 is INCOMPLETE: 1 of 1 artifact(s) missing:\n")
            && out.contains(&format!("\n  {PLATFORM} sha256 "))
            && out.contains(&format!(
                "upload them with: worker-release publish {release} --artifact PATH"
            )),
        "{out}"
    );
    let err = error_line(&w.cli("promote", &["--channel", "canary", "--version", "2.0.1"]));
    assert!(
        err.starts_with("worker-release: error [incomplete_release]: promote canary 2.0.1: refused by server (409): "),
        "{err}"
    );
    let out = w
        .cli("publish", &[&release, "--artifact", &artifact])
        .success();
    assert!(
        out.contains("release 2.0.1: already published, identical")
            && out.contains(&format!("artifact {PLATFORM}: stored ("))
            && out.ends_with("release 2.0.1 is complete: all 1 artifact(s) are stored\n"),
        "{out}"
    );

    // A token the server does not know.
    w.sandbox
        .write("wrong.token", format!("{}\n", e2e::fleet::token()));
    let err = error_line(&w.cli_with_token("status", "wrong.token", &[]));
    assert!(
        err.starts_with("worker-release: error [unauthorized]: status: refused by server (401): "),
        "{err}"
    );

    // A worker token on admin commands.
    w.sandbox
        .write("worker.token", format!("{}\n", w.server.worker_token));
    let err = error_line(&w.cli_with_token(
        "promote",
        "worker.token",
        &["--channel", "canary", "--version", "2.0.1"],
    ));
    assert!(
        err.starts_with(
            "worker-release: error [forbidden]: promote canary 2.0.1: refused by server (403): "
        ),
        "{err}"
    );
    let err = error_line(&w.cli_with_token("audit", "worker.token", &[]));
    assert!(
        err.starts_with("worker-release: error [forbidden]: audit: refused by server (403): "),
        "{err}"
    );
    // Neither moved anything.
    let status = w.status();
    assert!(status.starts_with("channels\n  (none)\n"), "{status}");

    // An empty token file is named.
    w.sandbox.write("empty.token", "\n\n");
    let err = error_line(&w.cli_with_token("status", "empty.token", &[]));
    assert!(
        err.contains("token file empty.token holds no token"),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_is_named_in_one_line() {
    let sandbox = Sandbox::new();
    sandbox.write("admin.token", format!("{}\n", e2e::fleet::token()));
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let server = format!("http://127.0.0.1:{port}");
    let run = sandbox.release_cli(&["status", "--server", &server, "--token-file", "admin.token"]);
    let err = error_line(&run);
    assert!(
        err.starts_with(&format!(
            "worker-release: error [unreachable]: status: could not reach the update server at {server}/api/admin/status"
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert_eq!(run.stdout(), "");

    let run = sandbox.release_cli(&[
        "halt",
        "--server",
        &server,
        "--token-file",
        "admin.token",
        "--channel",
        "canary",
        "--reason",
        "bad thumbnails",
    ]);
    let err = error_line(&run);
    assert!(
        err.starts_with(&format!(
            "worker-release: error [unreachable]: halt canary: could not reach the update server at {server}/api/admin/channels/canary/halt"
        )),
        "{err}"
    );
}

/// `worker-release channel SUBCOMMAND ARGS... --server URL --token-file admin.token`.
fn channel_cli(w: &World, args: &[&str]) -> Run {
    let mut all = vec!["channel"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", &w.server.url, "--token-file", "admin.token"]);
    w.sandbox.release_cli(&all)
}

/// Issue 12 item 5: a channel exists only once created. `promote --channel stabel` is refused
/// (it used to open a new channel at 100 %), a worker naming an unknown channel is answered 404
/// `unknown_channel` without entering the inventory or the metrics, stable needs `--percent`, and
/// a channel workers follow is deleted only with `--force`.
#[test]
fn channels_are_created_explicitly_and_a_typo_is_refused() {
    let mut w = world();
    w.published("1.1.0");
    let admin = w.server.admin();
    let worker = w.server.worker();
    let names = |w: &World| -> Vec<Vec<String>> {
        channel_cli(w, &["list"])
            .success()
            .lines()
            .skip(1)
            .map(cells)
            .collect()
    };
    // A typo is refused with the reason and the way out; nothing was created.
    let err = error_line(&w.cli(
        "promote",
        &[
            "--channel",
            "stabel",
            "--version",
            "1.1.0",
            "--percent",
            "10",
        ],
    ));
    assert!(
        err.starts_with(
            "worker-release: error [unknown_channel]: promote stabel 1.1.0: refused by server (404): "
        ) && err.contains("worker-release channel create stabel"),
        "{err}"
    );

    // A new server starts with the two channels the README promotes to; the
    // typo created nothing.
    assert_eq!(
        names(&w),
        [["canary", "-", "0"], ["stable", "-", "0"]],
        "channel list of a new server"
    );

    // Workers naming an unknown channel: a clear 404, not an empty answer, no inventory entry,
    // no label value.
    let reply = worker.latest("nosuch", "1.0.0", "w-typo");
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (404, Some("unknown_channel")),
        "{}",
        reply.text()
    );
    let reply = worker.post_json(
        "/api/workers/register",
        &serde_json::json!({"worker_id": "w-typo", "current_version": "1.0.0",
            "platform": PLATFORM, "channel": "nosuch"}),
    );
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (404, Some("unknown_channel")),
        "{}",
        reply.text()
    );
    let metrics = w.server.admin().get("/metrics").text();
    assert!(!metrics.contains("nosuch"), "{metrics}");
    assert!(!w.status().contains("w-typo"));

    // Stable needs an explicit share: the CLI says so before sending anything, and the server
    // refuses an API call without it too.
    let err = error_line(&w.cli(
        "promote",
        &[
            "--channel",
            "stable",
            "--version",
            "1.1.0",
            "--override",
            "--reason",
            "hotfix",
        ],
    ));
    assert!(err.contains("--percent"), "{err}");
    let reply = admin.post_json(
        "/api/admin/channels/stable/promote",
        &serde_json::json!({"version": "1.1.0", "override": true, "reason": "hotfix"}),
    );
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (400, Some("percent_required")),
        "{}",
        reply.text()
    );
    assert!(
        !w.cli("audit", &[]).success().contains("promote"),
        "nothing was promoted"
    );

    // Created, it can be promoted to and followed; created twice is a conflict.
    let out = channel_cli(&w, &["create", "beta"]).success();
    assert_eq!(out, "channel create beta: done\n");
    let err = error_line(&channel_cli(&w, &["create", "beta"]));
    assert!(
        err.starts_with("worker-release: error [channel_exists]: channel create beta: refused by server (409): "),
        "{err}"
    );
    let err = error_line(&channel_cli(&w, &["create", "Beta!"]));
    assert!(err.contains("[bad_request]"), "{err}");
    w.cli("promote", &["--channel", "beta", "--version", "1.1.0"])
        .success();
    let reply = worker.latest("beta", "1.0.0", "w-beta");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["channel"]["signed"]["release"]["version"],
        "1.1.0",
        "{}",
        reply.text()
    );

    // Channels are durable. A poll's sighting is written behind the answer, so one made just
    // before a kill -9 may be lost (state/sightings.rs); the worker's next poll, as any agent
    // makes, writes it again.
    w.server.crash_and_restart();
    let worker = w.server.worker();
    let reply = worker.latest("beta", "1.1.0", "w-beta");
    assert!(matches!(reply.status, 200 | 304), "{}", reply.text());
    assert_eq!(
        names(&w),
        [
            ["beta", "1.1.0", "1"],
            ["canary", "-", "0"],
            ["stable", "-", "0"]
        ]
    );

    // A channel a worker follows is not deleted by accident; --force does, audited.
    let err = error_line(&channel_cli(&w, &["delete", "beta"]));
    assert!(
        err.starts_with("worker-release: error [channel_in_use]: channel delete beta: refused by server (409): 1 worker(s) follow channel \"beta\""),
        "{err}"
    );
    let out = channel_cli(&w, &["delete", "beta", "--force"]).success();
    assert_eq!(out, "channel delete beta: done\n");
    let reply = worker.latest("beta", "1.1.0", "w-beta");
    assert_eq!(
        reply.json()["reason"],
        "unknown_channel",
        "{}",
        reply.text()
    );
    let audit = w.cli("audit", &[]).success();
    assert!(
        audit.contains("channel_delete") && audit.contains("channel_create"),
        "{audit}"
    );
    assert_eq!(names(&w).len(), 2);
}

/// Issue 12 item 6: a decommissioned worker is forgotten (`worker-release worker forget ID`:
/// out of the inventory and the fleet gauges, audited), and `audit` filters by `--channel`,
/// `--kind` and `--since` on the server.
#[test]
fn a_decommissioned_worker_is_forgotten_and_the_audit_log_filters() {
    let w = world();
    w.published("1.1.0");
    w.cli("promote", &["--channel", "canary", "--version", "1.1.0"])
        .success();
    let worker = w.server.worker();
    for (id, channel) in [("w-retired", "canary"), ("w-kept", "stable")] {
        let reply = worker.post_json(
            "/api/workers/register",
            &serde_json::json!({"worker_id": id, "current_version": "1.0.0",
                "platform": PLATFORM, "channel": channel}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let total =
        |w: &World| w.server.admin().get("/api/admin/status").json()["workers_total"].clone();
    assert_eq!(total(&w), 2);
    let canary_gauges = |w: &World| -> Vec<String> {
        w.server
            .admin()
            .get("/metrics")
            .text()
            .lines()
            .filter(|l| {
                !l.starts_with('#') && l.contains("workers") && l.contains("channel=\"canary\"")
            })
            .map(str::to_owned)
            .collect()
    };
    let before = canary_gauges(&w);
    assert!(before.iter().any(|l| l.ends_with(" 1")), "{before:?}");

    let out = w
        .sandbox
        .release_cli(&[
            "worker",
            "forget",
            "w-retired",
            "--server",
            &w.server.url,
            "--token-file",
            "admin.token",
        ])
        .success();
    assert_eq!(out, "worker forget w-retired: done\n");
    assert_eq!(total(&w), 1, "the forgotten worker left the inventory");
    let after = canary_gauges(&w);
    assert!(
        after.iter().all(|l| l.ends_with(" 0")),
        "no canary worker counted any more: {after:?}"
    );
    // Forgotten for good: survives a restart, and a second forget is a clear 404.
    let mut w = w;
    w.server.crash_and_restart();
    assert_eq!(total(&w), 1);
    let err = error_line(&w.sandbox.release_cli(&[
        "worker",
        "forget",
        "w-retired",
        "--server",
        &w.server.url,
        "--token-file",
        "admin.token",
    ]));
    assert!(
        err.starts_with("worker-release: error [unknown_worker]: worker forget w-retired: refused by server (404): "),
        "{err}"
    );

    // The audit log, filtered on the server.
    let forgets = audit_rows(&w.cli("audit", &["--kind", "worker_forget"]).success());
    assert_eq!(forgets.len(), 1, "{forgets:?}");
    assert_eq!(forgets[0][1], "worker_forget");
    assert!(
        forgets[0][forgets[0].len() - 1].contains("w-retired"),
        "{forgets:?}"
    );
    let canary = audit_rows(&w.cli("audit", &["--channel", "canary"]).success());
    assert!(
        !canary.is_empty() && canary.iter().all(|row| row[3] == "canary"),
        "{canary:?}"
    );
    let promotes = audit_rows(
        &w.cli(
            "audit",
            &["--channel", "canary", "--kind", "promote", "--since", "1h"],
        )
        .success(),
    );
    assert_eq!(promotes.len(), 1, "{promotes:?}");
    let future = w
        .cli("audit", &["--since", "2099-01-01T00:00:00Z"])
        .success();
    assert_eq!(future, "(none)\n");
    let reply = w.server.admin().get("/api/admin/audit?since=yesterday");
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (400, Some("bad_request"))
    );
}
