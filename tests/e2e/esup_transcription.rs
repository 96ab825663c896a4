//! The `transcription` task end to end through the task API, with the real Whisper venv
//! (`WHISPER_PYTHON`, made by `scripts/setup-whisper.sh`): French speech made by `espeak-ng -v fr`
//! transcribed by the packaged multilingual model with `language=fr` and detected with
//! `language=auto`; a model that is not provisioned fails the task, naming the model and the
//! provisioning command; a model provisioned into `WHISPER_MODELS_DIR` by hash transcribes, and
//! once one of its files changes it is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::manager::free_port_range;
use e2e::world::World;
use serde_json::{json, Value};

use crate::esup_media::{completed, output, run, runner};

/// The French sentence espeak-ng speaks, and the words of it the transcript must contain (at
/// least [`FRENCH_MIN`] of them: espeak-ng's voice is robotic and Whisper base mishears a word
/// or two, "Bonjour" as "Pour" for one).
const FRENCH: &str = "Bonjour à tous. Bienvenue à l'université. Les étudiants de première année \
                      ont cours de mathématiques ce matin.";
const FRENCH_WORDS: [&str; 7] = [
    "bonjour",
    "bienvenue",
    "universite",
    "etudiant",
    "premiere",
    "annee",
    "mathematiques",
];
const FRENCH_MIN: usize = 5;

/// `sha256` of the packaged base model's `model.bin` (`agent/runner/whisper/models.json`).
const BASE_WEIGHTS: &str = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

fn whisper_python() -> String {
    let python = std::env::var("WHISPER_PYTHON").expect(
        "WHISPER_PYTHON must point to the Whisper venv's python (scripts/test.sh sets it up)",
    );
    assert!(
        Path::new(&python).exists(),
        "WHISPER_PYTHON={python} does not exist"
    );
    python
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_owned()
}

/// `text` spoken by espeak-ng's French voice, as an MP3 the Manager serves.
fn french_speech(world: &World, name: &str) {
    let wav = world.sandbox.join("french.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "fr", "-w"])
        .arg(&wav)
        .arg(FRENCH)
        .status()
        .expect("espeak-ng runs (install the Debian package espeak-ng; scripts/test.sh does)");
    assert!(status.success());
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .arg(world.media.join(name))
        .status()
        .expect("ffmpeg");
    assert!(status.success());
}

/// Lower case, French accents and punctuation dropped: what the word checks compare.
fn folded(text: &str) -> String {
    let mut out = String::new();
    for c in text.to_lowercase().chars() {
        match c {
            'à' | 'â' | 'ä' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' => out.push('i'),
            'ô' | 'ö' => out.push('o'),
            'ù' | 'û' | 'ü' => out.push('u'),
            'ç' => out.push('c'),
            'œ' => out.push_str("oe"),
            c if c.is_alphanumeric() => out.push(c),
            _ => out.push(' '),
        }
    }
    out
}

/// The subtitles of `id` contain at least [`FRENCH_MIN`] of [`FRENCH_WORDS`] (a word counts when a
/// heard word starts with it: "etudiant" for "étudiants").
#[track_caller]
fn assert_french_heard(world: &World, id: &str) -> String {
    let vtt = std::fs::read_to_string(output(world, id).join("french.vtt")).expect("french.vtt");
    assert!(vtt.starts_with("WEBVTT") && vtt.contains(" --> "), "{vtt}");
    let heard = folded(&vtt);
    let words: Vec<&str> = heard.split_whitespace().collect();
    let found: Vec<&str> = FRENCH_WORDS
        .into_iter()
        .filter(|w| words.iter().any(|h| h.starts_with(w)))
        .collect();
    assert!(
        found.len() >= FRENCH_MIN,
        "{id}: only {found:?} of {FRENCH_WORDS:?} heard in: {vtt}"
    );
    vtt
}

fn info_video(world: &World, id: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(output(world, id).join("info_video.json")).expect("info_video.json"),
    )
    .expect("info_video.json is JSON")
}

#[test]
fn french_speech_is_transcribed_with_language_fr_and_detected_with_auto() {
    let python = whisper_python();
    let world = World::builder().with_manager().start();
    french_speech(&world, "french.mp3");
    let port = free_port_range(1);
    // No model given anywhere: the default, the packaged multilingual base.
    let _agent = runner(&world, port, &[("WHISPER_PYTHON", &python)]);

    let started = Instant::now();
    run(
        &world,
        port,
        "fr",
        "transcription",
        "french.mp3",
        json!({"language": "fr"}),
    );
    completed(&world, "fr", "completed", Duration::from_secs(240));
    eprintln!(
        "language=fr: {:?} (task API to completion)",
        started.elapsed()
    );
    let vtt = assert_french_heard(&world, "fr");
    eprintln!("{vtt}");
    let info = info_video(&world, "fr");
    assert_eq!(info["model"], "base", "{info}");
    assert_eq!(info["language"], "fr", "{info}");
    assert_eq!(info["language_detected"], false, "{info}");

    let started = Instant::now();
    run(
        &world,
        port,
        "auto",
        "transcription",
        "french.mp3",
        json!({"language": "auto", "format": "vtt,srt"}),
    );
    completed(&world, "auto", "completed", Duration::from_secs(240));
    eprintln!("language=auto: {:?}", started.elapsed());
    assert_french_heard(&world, "auto");
    let info = info_video(&world, "auto");
    assert_eq!(info["language"], "fr", "French detected: {info}");
    assert_eq!(info["language_detected"], true, "{info}");
    assert!(output(&world, "auto").join("french.srt").is_file());
}

#[test]
fn a_model_that_is_not_provisioned_fails_the_task_naming_it_and_the_command() {
    let python = whisper_python();
    let world = World::builder().with_manager().start();
    french_speech(&world, "french.mp3");
    let models = world.sandbox.join("whisper-models");
    std::fs::create_dir_all(&models).expect("models dir");
    // One agent per world (they share its install directory); WHISPER_MODELS_DIR unset is
    // covered by the unit tests of transcription::models.
    let port = free_port_range(1);
    let models_text = models.to_str().expect("UTF-8 path");
    let _agent = runner(
        &world,
        port,
        &[
            ("WHISPER_PYTHON", &python),
            ("WHISPER_MODELS_DIR", models_text),
        ],
    );

    for (id, port, model, why) in [
        (
            "medium",
            port,
            "medium",
            format!("{} does not exist", models.join("medium").display()),
        ),
        (
            "turbo",
            port,
            "turbo",
            format!("{} does not exist", models.join("turbo").display()),
        ),
        (
            "large-v3",
            port,
            "large-v3",
            format!("{} does not exist", models.join("large").display()),
        ),
    ] {
        run(
            &world,
            port,
            id,
            "transcription",
            "french.mp3",
            json!({"language": "fr", "model": model}),
        );
        let completion = completed(&world, id, "failed", Duration::from_secs(60));
        let message = completion["error_message"].as_str().unwrap_or_default();
        let name = if model == "large-v3" { "large" } else { model };
        assert!(
            message.contains(&format!("model {name} is not provisioned ("))
                && message.contains(&why)
                && message.contains(&format!(
                    "scripts/provision-whisper-model.sh {name} SOURCE_DIR"
                ))
                && message.contains("wiki/operations/transcription.md"),
            "{id}: {completion}"
        );
        assert!(
            !output(&world, id).join("french.vtt").exists(),
            "{id}: no fall-back to another model"
        );
    }

    // The English-only model with French: refused, not switched.
    run(
        &world,
        port,
        "english-only",
        "transcription",
        "french.mp3",
        json!({"language": "fr", "model": "tiny.en"}),
    );
    let completion = completed(&world, "english-only", "failed", Duration::from_secs(60));
    let message = completion["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("model tiny.en is English-only: language fr")
            && message.contains("model=base"),
        "{completion}"
    );
}

/// Runs `scripts/provision-whisper-model.sh` with `args`.
fn provision(python: &str, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("scripts/provision-whisper-model.sh"))
        .args(args)
        .env("WHISPER_PYTHON", python)
        .env_remove("WHISPER_MODELS_DIR")
        .output()
        .expect("bash runs the provisioning script")
}

#[test]
fn a_model_provisioned_by_hash_transcribes_and_a_changed_file_is_refused() {
    let python = whisper_python();
    // The real model files at hand: the packaged base model the setup joined into the venv.
    let venv = Path::new(&python)
        .parent()
        .and_then(Path::parent)
        .expect("WHISPER_PYTHON is VENV/bin/python");
    let base = venv.join("whisper-models/base");
    let base_text = base.to_str().expect("UTF-8 path").to_owned();
    assert!(base.join("model.bin").is_file(), "{}", base.display());
    let world = World::builder().with_manager().start();
    let models = world.sandbox.join("whisper-models");
    let models_text = models.to_str().expect("UTF-8 path").to_owned();

    // Files that are not the registry's `small` are refused, and nothing is left behind.
    let refused = provision(&python, &["small", &base_text, &models_text]);
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to provision model small"),
        "{stderr}"
    );
    assert!(!models.join("small").exists());
    // A model the registry does not know needs the sha256 of its weights, and must match it.
    let refused = provision(&python, &["campus", &base_text, &models_text]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--sha256"),
        "{refused:?}"
    );
    let wrong = "0".repeat(64);
    let refused = provision(
        &python,
        &["campus", &base_text, &models_text, "--sha256", &wrong],
    );
    assert!(!refused.status.success(), "{refused:?}");
    assert!(!models.join("campus").exists());

    let started = Instant::now();
    let provisioned = provision(
        &python,
        &["campus", &base_text, &models_text, "--sha256", BASE_WEIGHTS],
    );
    assert!(provisioned.status.success(), "{provisioned:?}");
    eprintln!("provisioning 145 MB: {:?}", started.elapsed());
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(models.join("campus/worker-agent-model.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["files"]["model.bin"]["sha256"], BASE_WEIGHTS);

    french_speech(&world, "french.mp3");
    let port = free_port_range(1);
    let _agent = runner(
        &world,
        port,
        &[
            ("WHISPER_PYTHON", &python),
            ("WHISPER_MODELS_DIR", &models_text),
        ],
    );
    run(
        &world,
        port,
        "provisioned",
        "transcription",
        "french.mp3",
        json!({"language": "fr", "model": "campus"}),
    );
    completed(&world, "provisioned", "completed", Duration::from_secs(240));
    assert_french_heard(&world, "provisioned");
    let info = info_video(&world, "provisioned");
    assert_eq!(info["model"], "campus", "{info}");
    assert_eq!(
        info["model_path"],
        models.join("campus").display().to_string()
    );

    // The same number of bytes, one of them changed: the sha256 check refuses it.
    let weights = models.join("campus/model.bin");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&weights)
            .expect("open model.bin");
        let mut byte = [0u8];
        file.seek(SeekFrom::Start(1 << 20)).expect("seek");
        file.read_exact(&mut byte).expect("read");
        file.seek(SeekFrom::Start(1 << 20)).expect("seek");
        file.write_all(&[!byte[0]]).expect("write");
    }
    run(
        &world,
        port,
        "changed",
        "transcription",
        "french.mp3",
        json!({"language": "fr", "model": "campus"}),
    );
    let completion = completed(&world, "changed", "failed", Duration::from_secs(120));
    let message = completion["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refusing to load model campus")
            && message.contains(&format!("expected {BASE_WEIGHTS}"))
            && message.contains("provision-whisper-model.sh campus"),
        "{completion}"
    );
    assert!(!output(&world, "changed").join("french.vtt").exists());
}
