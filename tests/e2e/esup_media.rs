//! ESUP tasks end to end with the real tools: an agent driven through the runner protocol by the
//! `FakeManager` fixture, media generated at test time with ffmpeg's lavfi sources and speech
//! with espeak-ng, outputs checked with ffprobe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::agent_at_version;
use e2e::fleet::{metric, Agent, PLATFORM};
use e2e::manager::{
    free_port_range, make_clip, probe, probed_duration, probed_size, runner_api, task_body,
};
use e2e::world::World;
use serde_json::{json, Value};

/// An agent at `version` with one runner instance on `port`, registered with the Manager.
fn runner_at(world: &World, version: &str, port: u16, env: &[(&str, &str)]) -> Agent {
    let agent = world.runner(version, port).env(env).start();
    wait_registered(world, port);
    agent
}

/// Waits until the runner instance on `port` registered with the world's Manager.
pub(crate) fn wait_registered(world: &World, port: u16) {
    let id = format!("e2e-127.0.0.1-{port}");
    world
        .manager()
        .wait_until("the runner registered", Duration::from_secs(60), |m| {
            m.runners().contains_key(&id)
        });
}

pub(crate) fn runner(world: &World, port: u16, env: &[(&str, &str)]) -> Agent {
    runner_at(world, "1.0.0", port, env)
}

pub(crate) fn run(
    world: &World,
    port: u16,
    id: &str,
    task_type: &str,
    source: &str,
    parameters: Value,
) {
    let manager = world.manager();
    let reply = runner_api(port).post_json(
        "/task/run",
        &task_body(
            id,
            task_type,
            &manager.media_url(source),
            parameters,
            &manager.completion_url(),
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"status": "started", "task_id": id}));
}

/// Waits for the completion of `id` and checks it has `status`.
#[track_caller]
pub(crate) fn completed(world: &World, id: &str, status: &str, limit: Duration) -> Value {
    let completion = world.manager().completion_of(id, limit);
    assert_eq!(
        completion["status"],
        status,
        "{id}: {completion}\n--- error_script.log ---\n{}",
        std::fs::read_to_string(world.storage.join(id).join("error_script.log"))
            .unwrap_or_default()
    );
    completion
}

pub(crate) fn output(world: &World, id: &str) -> PathBuf {
    world.storage.join(id).join("output")
}

fn manifest_files(world: &World, id: &str) -> Vec<String> {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(world.storage.join(id).join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["task_id"], id);
    manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("name").to_owned())
        .collect()
}

#[track_caller]
fn assert_hls(path: &Path) {
    let playlist =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-BYTERANGE"),
        "single-file HLS: {playlist}"
    );
    assert!(playlist.contains("#EXTINF:"), "{playlist}");
}

#[test]
fn encoding_a_720p_clip_gives_the_ladder_without_upscaling() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("Leçon d'été.mp4"), 1280, 720, 10, true);
    let port = free_port_range(1);
    let agent = runner(&world, port, &[]);
    run(
        &world,
        port,
        "enc-720",
        "encoding",
        "Le%C3%A7on%20d%27%C3%A9t%C3%A9.mp4",
        json!({"video_id": "42", "video_slug": "lecon", "video_title": "Leçon d'été"}),
    );
    let completion = completed(&world, "enc-720", "completed", Duration::from_secs(240));
    assert_eq!(completion["error_message"], Value::Null);

    let stem = "Lecon_dete";
    let out = output(&world, "enc-720");
    let files = manifest_files(&world, "enc-720");
    for expected in [
        format!("360p_{stem}.m3u8"),
        format!("360p_{stem}.mp4"),
        format!("720p_{stem}.m3u8"),
        format!("720p_{stem}.mp4"),
        format!("audio_192k_{stem}.mp3"),
        format!("{stem}_0.png"),
        format!("{stem}_1.png"),
        format!("{stem}_2.png"),
        "overview.png".to_owned(),
        "overview.vtt".to_owned(),
        "info_video.json".to_owned(),
        "task_metadata.json".to_owned(),
    ] {
        assert!(
            files.contains(&expected),
            "manifest lacks {expected}: {files:?}"
        );
        assert!(out.join(&expected).is_file(), "{expected} missing");
    }
    assert!(
        !files.iter().any(|f| f.starts_with("1080p")),
        "no upscale to 1080p: {files:?}"
    );
    for (height, width) in [(360, 640), (720, 1280)] {
        let mp4 = probe(&out.join(format!("{height}p_{stem}.mp4")));
        assert_eq!(probed_size(&mp4), Some((width, height)));
        let duration = probed_duration(&mp4);
        assert!((duration - 10.0).abs() < 0.5, "{height}p lasts {duration}");
        assert_hls(&out.join(format!("{height}p_{stem}.m3u8")));
        let hls = probe(&out.join(format!("{height}p_{stem}.m3u8")));
        assert_eq!(probed_size(&hls), Some((width, height)));
    }
    let mp3 = probe(&out.join(format!("audio_192k_{stem}.mp3")));
    assert!((probed_duration(&mp3) - 10.0).abs() < 0.5);
    let vtt = std::fs::read_to_string(out.join("overview.vtt")).expect("overview.vtt");
    assert!(
        vtt.starts_with("WEBVTT") && vtt.contains("overview.png#xywh="),
        "{vtt}"
    );
    let info: Value =
        serde_json::from_slice(&std::fs::read(out.join("info_video.json")).expect("info"))
            .expect("json");
    assert!(
        info.to_string().contains(&format!("720p_{stem}.mp4")),
        "{info}"
    );

    // The result as the Manager fetches it.
    let api = runner_api(port);
    assert_eq!(
        api.get("/task/result/enc-720").json()["files"]
            .as_array()
            .map(Vec::len),
        Some(files.len())
    );
    let thumbnail = api.get(&format!("/task/result/enc-720/file/{stem}_1.png"));
    assert_eq!(thumbnail.status, 200);
    assert!(thumbnail.body.starts_with(b"\x89PNG"), "a PNG");
    let status = api.get("/task/status/enc-720").json();
    assert_eq!(
        (status["status"].clone(), status["progress"].clone()),
        (json!("completed"), json!(100.0))
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "worker_task_total{status=\"completed\",task_type=\"encoding\"}"
        ),
        Some(1.0)
    );
}

/// A mediapackage with a presenter and a presentation track, and optionally a SMIL cut.
fn mediapackage(world: &World, name: &str, layout: &str, cut: Option<(&str, &str)>) -> String {
    let catalog = cut.map_or_else(String::new, |(begin, end)| {
        let smil = format!(
            r#"<?xml version="1.0"?><smil xmlns="http://www.w3.org/ns/SMIL"><body><par><video src="presenter.mp4" clipBegin="{begin}" clipEnd="{end}"/></par></body></smil>"#
        );
        std::fs::write(world.media.join(format!("{name}.smil")), smil).expect("smil");
        format!(
            r#"<catalog type="smil/cutting"><mimetype>application/smil</mimetype><url>{}</url></catalog>"#,
            world.manager().media_url(&format!("{name}.smil"))
        )
    });
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<mediapackage xmlns="http://mediapackage.opencastproject.org" id="{name}" presenter="{layout}">
  <media>
    <track type="presenter/source" id="t1"><mimetype>video/mp4</mimetype><url>{presenter}</url></track>
    <track type="presentation/source" id="t2"><mimetype>video/mp4</mimetype><url>{presentation}</url></track>
  </media>
  <metadata>{catalog}</metadata>
</mediapackage>"#,
        presenter = world.manager().media_url("presenter.mp4"),
        presentation = world.manager().media_url("presentation.mp4"),
    );
    let file = format!("{name}.xml");
    std::fs::write(world.media.join(&file), xml).expect("mediapackage");
    file
}

#[test]
fn studio_composites_each_layout_with_and_without_a_smil_cut() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("presenter.mp4"), 320, 240, 4, true);
    make_clip(&world.media.join("presentation.mp4"), 640, 360, 4, false);
    let port = free_port_range(1);
    let _agent = runner(&world, port, &[]);
    for layout in ["mid", "piph", "pipb"] {
        for cut in [None, Some(("1s", "3s"))] {
            let id = format!(
                "studio-{layout}-{}",
                if cut.is_some() { "cut" } else { "full" }
            );
            let source = mediapackage(&world, &id, layout, cut);
            run(&world, port, &id, "studio", &source, json!({}));
            completed(&world, &id, "completed", Duration::from_secs(240));
            let base = probe(&output(&world, &id).join("studio_base.mp4"));
            let (width, height) = probed_size(&base).expect("studio_base has video");
            match layout {
                "mid" => assert!(
                    width > height * 2,
                    "{id}: side by side is wide: {width}x{height}"
                ),
                _ => assert_eq!(
                    (width, height),
                    (640, 360),
                    "{id}: the presentation's frame"
                ),
            }
            let expected = if cut.is_some() { 2.0 } else { 4.0 };
            let duration = probed_duration(&base);
            assert!(
                (duration - expected).abs() < 0.5,
                "{id}: lasts {duration}, expected {expected}"
            );
            let files = manifest_files(&world, &id);
            assert!(files.contains(&"studio_base.mp4".to_owned()), "{files:?}");
            assert!(
                files.iter().any(|f| f.ends_with(".m3u8")),
                "{id}: encoded after compositing: {files:?}"
            );
        }
    }
}

#[test]
fn transcription_of_espeak_speech_contains_the_key_phrases() {
    let python = std::env::var("WHISPER_PYTHON").expect(
        "WHISPER_PYTHON must point to the Whisper venv's python (scripts/test.sh sets it up)",
    );
    assert!(
        Path::new(&python).exists(),
        "WHISPER_PYTHON={python} does not exist"
    );
    let world = World::builder().with_manager().start();
    let wav = world.sandbox.join("speech.wav");
    let status = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg("This is a test of the emergency broadcast system. The quick brown fox jumps over the lazy dog.")
        .status()
        .expect("espeak-ng runs (install the Debian package espeak-ng; scripts/test.sh does)");
    assert!(status.success());
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .arg(world.media.join("speech.mp3"))
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let port = free_port_range(1);
    let _agent = runner(&world, port, &[("WHISPER_PYTHON", &python)]);
    run(
        &world,
        port,
        "speech",
        "transcription",
        "speech.mp3",
        // The English-only packaged model (the default is the multilingual base).
        json!({"language": "en", "format": "vtt,srt", "normalize": "true", "model": "tiny.en"}),
    );
    completed(&world, "speech", "completed", Duration::from_secs(180));
    let normalized = |text: &str| {
        text.to_lowercase()
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c.is_whitespace() {
                    c
                } else {
                    ' '
                }
            })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let vtt =
        std::fs::read_to_string(output(&world, "speech").join("speech.vtt")).expect("speech.vtt");
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert!(vtt.contains(" --> "), "{vtt}");
    let words = normalized(&vtt);
    // Whisper tiny.en mishears a little ("emergency rod cast system" after loudness
    // normalisation): assert phrases it hears reliably.
    for phrase in ["this is a test", "emergency", "lazy dog"] {
        assert!(words.contains(phrase), "{phrase:?} not heard in: {vtt}");
    }
    let srt =
        std::fs::read_to_string(output(&world, "speech").join("speech.srt")).expect("speech.srt");
    assert!(srt.starts_with('1') && srt.contains(" --> "), "{srt}");
    assert!(manifest_files(&world, "speech").contains(&"speech.vtt".to_owned()));
}

/// ffmpeg processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let output = std::process::Command::new("pgrep")
        .args(["-af", needle])
        .output()
        .expect("pgrep (procps)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("ffmpeg"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn stop_mid_encode_kills_ffmpeg_and_busy_instances_refuse_tasks() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("long.mp4"), 1280, 720, 60, true);
    let port = free_port_range(1);
    let agent = runner(&world, port, &[]);
    let api = runner_api(port);
    run(&world, port, "long", "encoding", "long.mp4", json!({}));
    let workspace = world.storage.join("long");
    agent.wait_until("ffmpeg encodes", Duration::from_secs(60), |_| {
        !processes_mentioning(&workspace.to_string_lossy()).is_empty()
    });
    let busy = api.post_json(
        "/task/run",
        &task_body(
            "other",
            "encoding",
            &world.manager().media_url("long.mp4"),
            json!({}),
            "",
        ),
    );
    assert_eq!(
        (busy.status, busy.json()),
        (400, json!({"detail": "Runner is busy"}))
    );
    assert_eq!(api.get("/runner/ping").json()["available"], false);
    world
        .manager()
        .wait_until("a busy heartbeat", Duration::from_secs(10), |m| {
            m.runners().values().any(|r| r.availability == "busy")
        });
    assert_eq!(api.get("/task/status/long").json()["status"], "running");
    assert_eq!(
        metric(
            &agent.metrics(),
            "worker_tasks_running{task_type=\"encoding\"}"
        ),
        Some(1.0)
    );

    let stop = api.post_json("/task/stop/long", &json!({}));
    assert_eq!(stop.status, 202, "{}", stop.text());
    assert_eq!(stop.json()["status"], "stop_requested");
    assert_eq!(stop.json()["termination_attempted"], true);
    assert_eq!(stop.json()["terminated_any_process"], true);
    let completion = completed(&world, "long", "failed", Duration::from_secs(30));
    assert_eq!(completion["error_message"], "Cancelled by user.");
    agent.wait_until(
        "no ffmpeg of the task left",
        Duration::from_secs(10),
        |_| processes_mentioning(&workspace.to_string_lossy()).is_empty(),
    );
    assert!(
        !workspace.join("manifest.json").exists(),
        "no manifest for a stopped task"
    );
    let again = api.post_json("/task/stop/long", &json!({}));
    assert_eq!(
        (again.status, again.json()["current_status"].clone()),
        (200, json!("failed"))
    );
    assert_eq!(api.get("/runner/ping").json()["available"], true);
}

#[test]
fn script_timeout_gives_timeout_and_a_failed_callback_is_retried() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("long.mp4"), 1280, 720, 60, true);
    let port = free_port_range(1);
    let agent = runner(&world, port, &[("EXTERNAL_SCRIPT_TIMEOUT_SECONDS", "3")]);
    // The Manager's callback fails twice: the runner retries until it is delivered. The retried
    // completion is the timed-out task's own, so nothing here depends on how fast an encode
    // finishes on a loaded machine (a second, "quick" task could itself hit the 3 s timeout).
    world.manager().fail_next_completions(2);
    let calls = world.manager().completion_calls();
    run(&world, port, "slow", "encoding", "long.mp4", json!({}));
    let completion = completed(&world, "slow", "timeout", Duration::from_secs(60));
    assert_eq!(
        completion["error_message"],
        "Script timeout after 3 seconds"
    );
    assert_eq!(
        runner_api(port).get("/task/status/slow").json()["status"],
        "timeout"
    );
    assert_eq!(
        world.manager().completion_calls() - calls,
        3,
        "two failures, then delivered"
    );
    // The runner removes its pending record once the Manager has answered the delivery, a
    // moment after the Manager recorded it: wait for that instead of racing it.
    let pending = world.storage.join("slow").join(".completion-pending.json");
    agent.wait_until(
        "the delivered completion's pending record is removed",
        Duration::from_secs(10),
        |_| !pending.exists(),
    );
}

/// A 1.0.0 runner on a free port running the encoding task `id` (30 s of 720p), and 2.0.0
/// promoted while it runs: returns once the agent says it waits for the task.
fn update_waiting_for_a_task(world: &World, id: &str) -> (Agent, u16) {
    make_clip(&world.media.join("long.mp4"), 1280, 720, 30, true);
    let port = free_port_range(1);
    // Build and publish 2.0.0 first (slow under load), so the promote lands while the task runs.
    let v2 = agent_at_version("2.0.0");
    world.publish("2.0.0", &[(PLATFORM, v2.as_path())]);
    let agent = runner_at(world, "1.0.0", port, &[]);
    run(world, port, id, "encoding", "long.mp4", json!({}));
    let workspace = world.storage.join(id);
    agent.wait_until("ffmpeg encodes", Duration::from_secs(60), |_| {
        !processes_mentioning(&workspace.to_string_lossy()).is_empty()
    });
    world.server.promote("stable", "2.0.0", 100);
    agent.wait_until(
        "the agent waits for the task",
        Duration::from_secs(60),
        |a| {
            a.log()
                .contains("waiting for running tasks before updating")
        },
    );
    (agent, port)
}

#[test]
fn a_self_update_waits_for_the_running_task() {
    let world = World::builder().with_manager().start();
    let (agent, port) = update_waiting_for_a_task(&world, "during-update");
    // Draining: the Manager sees a busy runner, and v1 keeps running the task.
    assert_eq!(
        runner_api(port).get("/runner/ping").json()["available"],
        false
    );
    assert!(agent.serves_version("1.0.0"));
    let completion = completed(
        &world,
        "during-update",
        "completed",
        Duration::from_secs(240),
    );
    assert_eq!(completion["error_message"], Value::Null);
    agent.wait_until("v2 serves after the task", Duration::from_secs(120), |a| {
        a.serves_version("2.0.0")
    });
    // v2 registers again and still answers for the task v1 ran.
    world
        .manager()
        .wait_until("v2 registered", Duration::from_secs(30), |m| {
            m.registrations() >= 2
        });
    let api = runner_api(port);
    agent.wait_until("v2's runner answers", Duration::from_secs(30), |_| {
        api.get("/runner/ping").json()["registered"] == true
    });
    assert_eq!(
        api.get("/task/status/during-update").json()["status"],
        "completed"
    );
    assert!(api.get("/task/result/during-update").json()["files"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
}

#[test]
fn an_update_halted_while_it_waits_for_the_running_task_is_not_installed() {
    let world = World::builder().with_manager().start();
    let (agent, port) = update_waiting_for_a_task(&world, "halted");
    // The operator halts the rollout while the update waits for the task.
    let halt = world.server.admin().post_json(
        "/api/admin/channels/stable/halt",
        &json!({"reason": "halted while a worker waits for its task"}),
    );
    assert_eq!(halt.status, 200, "halt: {halt:?}");
    completed(&world, "halted", "completed", Duration::from_secs(240));
    // The agent looks at the channel again before handing over: halted, so it does not install
    // 2.0.0 and takes tasks again.
    let handed_over = "handing over to the supervisor";
    agent.wait_until(
        "the update abandoned or handed over",
        Duration::from_secs(60),
        |a| {
            let log = a.log();
            log.contains("the channel changed while the update waited") || log.contains(handed_over)
        },
    );
    assert!(
        !agent.log().contains(handed_over),
        "the halted update was handed over to be installed:\n{}",
        agent.log()
    );
    let api = runner_api(port);
    agent.wait_until(
        "the runner takes tasks again",
        Duration::from_secs(60),
        |_| api.get("/runner/ping").json()["available"] == true,
    );
    // Give a wrongly installing agent time to swap and start 2.0.0, then look again.
    std::thread::sleep(Duration::from_secs(10));
    assert!(agent.serves_version("1.0.0"), "{}", agent.log());
    assert!(
        agent.installed_version().starts_with("worker-agent 1.0.0 "),
        "{}",
        agent.installed_version()
    );
    assert!(
        !agent.state_dir.join("pending.json").exists(),
        "nothing handed over"
    );
    let reports = world.server.reports();
    assert!(!reports.contains("success"), "{reports}");
}
