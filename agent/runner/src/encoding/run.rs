//! Running the pipeline: probe, cut, dressing, the ladder command, then the pictures and
//! `info_video.json`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::error::TaskError;
use crate::media::probe::{self};
use crate::media::{clock, display_name, run_ffmpeg, split_range, EncodingLog, ProgressSpan};
use crate::paths;
use crate::pipeline::{EncodingType, PipelineResult, TaskContext};

use super::args::Outputs;
use super::dressing::{describe_dressing, dressing_args, prepare_dressing};
use super::ladder::{
    audio_only_args, ladder_args, master_playlist, scaled_width, select_ladder, LadderJob, Rung,
};
use super::options::{cut_args, EncodingOptions};
use super::overview::{overview_grid, sprite_args, thumbnail_args, OverviewGrid};

/// One file in `info_video.json`.
#[derive(Debug, Clone, Serialize)]
struct EncodedFile {
    file: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
}

impl EncodedFile {
    fn new(path: &Path, kind: &'static str) -> Self {
        EncodedFile {
            file: display_name(path),
            kind,
            width: None,
            height: None,
        }
    }

    fn sized(path: &Path, kind: &'static str, width: u32, height: u32) -> Self {
        EncodedFile {
            width: Some(width),
            height: Some(height),
            ..EncodedFile::new(path, kind)
        }
    }
}

/// Encodes `input` (a local file in the workspace) into `ctx.output_dir`, with the output stem
/// of `ctx.source_name`; moves the progress from 0 to 100.
pub async fn run(ctx: &TaskContext, input: &Path) -> PipelineResult {
    let stem = paths::output_stem(&ctx.source_name);
    encode(ctx, input, &stem, (0.0, 100.0)).await
}

/// [`run`] with an explicit stem and the part of the progress it covers (studio runs it after
/// its own composite step).
pub(crate) async fn encode(
    ctx: &TaskContext,
    input: &Path,
    stem: &str,
    range: (f64, f64),
) -> PipelineResult {
    // Parameters first: a typo must not cost a probe or a download.
    let options = EncodingOptions::from_parameters(&ctx.parameters)?;
    tokio::fs::create_dir_all(&ctx.output_dir)
        .await
        .map_err(|e| TaskError::io("creating", &ctx.output_dir, &e))?;
    let outputs = Outputs::new(&ctx.output_dir, stem);
    let log = EncodingLog::new(outputs.log());
    let encoding = ctx.media.encoding_type;
    ctx.progress.set(range.0);

    let source = probe::probe(ctx, "the source", input).await?;
    let cut = match options.cut {
        Some(cut) => cut
            .within(source.duration)
            .map_err(|reason| TaskError::BadInput(format!("parameter cut: {reason}")))?,
        None => None,
    };
    let mut notes: Vec<String> = Vec::new();
    let dressing = match &options.dressing {
        Some(_) if source.video.is_none() => {
            notes.push("dressing ignored: the source has no video".to_owned());
            None
        }
        other => other.as_ref(),
    };
    let has_video = source.video.is_some();
    let spans = split_range(
        range.0,
        range.1,
        &[
            if cut.is_some() { 1.0 } else { 0.0 },
            if dressing.is_some() { 1.5 } else { 0.0 },
            if has_video { 4.0 } else { 1.0 },
            if has_video { 0.2 } else { 0.0 },
        ],
    );
    let span = |i: usize, duration: f64| ProgressSpan {
        from: spans[i].0,
        to: spans[i].1,
        duration,
    };

    let mut current = input.to_owned();
    // Intermediates (near-lossless, often larger than the source) are removed on success.
    let mut scratch: Vec<PathBuf> = Vec::new();
    let mut info = source.clone();
    if let Some(cut) = cut {
        let output = ctx.workspace.join("encoding_cut.mkv");
        let args = cut_args(&current, &info, cut, &output, encoding);
        run_ffmpeg(ctx, &log, "cut", &args, Some(span(0, cut.duration()))).await?;
        info = probe::probe(ctx, "the cut source", &output).await?;
        scratch.push(output.clone());
        current = output;
        notes.push(format!(
            "cut {} - {}",
            clock::vtt_timestamp(cut.start),
            clock::vtt_timestamp(cut.end)
        ));
    }
    if let Some(dressing) = dressing {
        ctx.process.check()?;
        let job = prepare_dressing(ctx, dressing, &current, &info).await?;
        let output = ctx.workspace.join("encoding_dressed.mkv");
        let args = dressing_args(&job, &output, encoding);
        run_ffmpeg(ctx, &log, "dressing", &args, Some(span(1, job.duration()))).await?;
        info = probe::probe(ctx, "the dressed source", &output).await?;
        scratch.push(output.clone());
        current = output;
        notes.push(describe_dressing(dressing));
    }
    ctx.process.check()?;

    let mut files: Vec<EncodedFile> = Vec::new();
    let mut ladder: Vec<Rung> = Vec::new();
    let mut overview: Option<OverviewGrid> = None;
    match (&info.video, &info.audio) {
        (Some(video), audio) => {
            ladder = select_ladder(&options.ladder, video);
            let planned = overview_grid(info.duration, video);
            let frames_dir = ctx.workspace.join("overview_frames");
            scratch.push(frames_dir.clone());
            // A previous attempt's frames would be tiled too.
            let _ = tokio::fs::remove_dir_all(&frames_dir).await;
            tokio::fs::create_dir_all(&frames_dir)
                .await
                .map_err(|e| TaskError::io("creating", &frames_dir, &e))?;
            let pattern = frames_dir.join("%03d.png");
            let job = LadderJob {
                input: &current,
                video,
                audio: audio.as_ref(),
                rungs: &ladder,
                outputs: &outputs,
                overview: Some((&planned, &pattern)),
                encoding,
            };
            run_ffmpeg(
                ctx,
                &log,
                "encode",
                &ladder_args(&job),
                Some(span(2, info.duration)),
            )
            .await?;
            let args = thumbnail_args(&current, video, info.duration, &outputs);
            run_ffmpeg(ctx, &log, "thumbnails", &args, None).await?;
            let written = count_files(&frames_dir).await?;
            if written == 0 {
                return Err(TaskError::Failed(
                    "ffmpeg wrote no overview frame (see encoding.log)".to_owned(),
                ));
            }
            let grid = planned.with_count(written);
            let args = sprite_args(&grid, &pattern, &outputs.overview_image());
            run_ffmpeg(ctx, &log, "overview", &args, Some(span(3, info.duration))).await?;
            ctx.process.check()?;
            for rung in &ladder {
                let width = scaled_width(video.width, video.height, rung.height);
                files.push(EncodedFile::sized(
                    &outputs.hls(rung.height),
                    "hls",
                    width,
                    rung.height,
                ));
                files.push(EncodedFile::sized(
                    &outputs.hls_segments(rung.height),
                    "hls_segments",
                    width,
                    rung.height,
                ));
                if rung.encode_mp4 {
                    files.push(EncodedFile::sized(
                        &outputs.mp4(rung.height),
                        "mp4",
                        width,
                        rung.height,
                    ));
                }
            }
            if audio.is_some() {
                files.push(EncodedFile::new(&outputs.mp3(), "mp3"));
            }
            for i in 0..3 {
                files.push(EncodedFile::new(&outputs.thumbnail(i), "thumbnail"));
            }
            files.push(EncodedFile::new(&outputs.overview_image(), "overview"));
            let vtt = grid.vtt(info.duration, &display_name(&outputs.overview_image()));
            write(&outputs.overview_vtt(), vtt.as_bytes()).await?;
            files.push(EncodedFile::new(&outputs.overview_vtt(), "overview_vtt"));
            let master = master_playlist(&ladder, video, audio.is_some(), stem);
            write(&outputs.master(), master.as_bytes()).await?;
            files.push(EncodedFile::new(&outputs.master(), "hls_master"));
            overview = Some(grid);
        }
        (None, Some(audio)) => {
            let args = audio_only_args(&current, audio, &outputs);
            run_ffmpeg(ctx, &log, "audio", &args, Some(span(2, info.duration))).await?;
            files.push(EncodedFile::new(&outputs.mp3(), "mp3"));
            files.push(EncodedFile::new(&outputs.m4a(), "m4a"));
        }
        (None, None) => {
            return Err(TaskError::BadInput(
                "the source has no video and no audio stream".to_owned(),
            ))
        }
    }
    // ffmpeg exits 0 in a few cases where an output stays empty (a muxer that got no packets):
    // say so instead of publishing a broken result.
    for file in &files {
        let path = ctx.output_dir.join(&file.file);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() > 0 => {}
            _ => {
                return Err(TaskError::Failed(format!(
                    "ffmpeg succeeded but {} is missing or empty (see encoding.log)",
                    file.file
                )))
            }
        }
    }

    let info_json = json!({
        "video_id": options.video_id,
        "video_slug": options.video_slug,
        "video_title": options.video_title,
        "source_file": ctx.source_name,
        "stem": stem,
        "duration": info.duration,
        "source_duration": source.duration,
        "has_video": info.video.is_some(),
        "has_audio": info.audio.is_some(),
        "width": info.video.as_ref().map(|v| v.width),
        "height": info.video.as_ref().map(|v| v.height),
        "video_codec": source.video.as_ref().map(|v| v.codec.clone()),
        "audio_codec": source.audio.as_ref().map(|a| a.codec.clone()),
        "format": source.format_name,
        "size": source.size,
        "bit_rate": source.bit_rate,
        "frame_rate": source.video.as_ref().and_then(|v| v.frame_rate),
        "probe": {"source": source, "encoded_input": info},
        "encoding_type": match encoding { EncodingType::Cpu => "CPU", EncodingType::Gpu => "GPU" },
        "ladder": ladder,
        "cut": cut,
        "dressing": dressing,
        "overview": overview,
        "encoded_files": files,
    });
    let pretty = serde_json::to_vec_pretty(&info_json)
        .map_err(|e| TaskError::Failed(format!("writing info_video.json: {e}")))?;
    write(&outputs.info(), &pretty).await?;
    for path in &scratch {
        // Best effort: a leftover only costs disk until the task directory is cleaned up.
        let _ = if path.is_dir() {
            tokio::fs::remove_dir_all(path).await
        } else {
            tokio::fs::remove_file(path).await
        };
    }
    ctx.progress.set(range.1);

    let shape = match &info.video {
        Some(v) => format!(
            "{}x{} video{}",
            v.width,
            v.height,
            if info.audio.is_some() {
                " with audio"
            } else {
                ", no audio"
            }
        ),
        None => "audio".to_owned(),
    };
    let mut summary = format!("encoded {:.1} s of {shape}", info.duration);
    if !ladder.is_empty() {
        let heights: Vec<String> = ladder.iter().map(|r| format!("{}p", r.height)).collect();
        summary.push_str(&format!("; renditions {}", heights.join(", ")));
    }
    for note in &notes {
        summary.push_str(&format!("; {note}"));
    }
    let names: Vec<&str> = files.iter().map(|f| f.file.as_str()).collect();
    summary.push_str(&format!(
        "\nfiles: {} info_video.json encoding.log",
        names.join(" ")
    ));
    Ok(summary)
}

/// Regular files in `dir`.
async fn count_files(dir: &Path) -> Result<u32, TaskError> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| TaskError::io("listing", dir, &e))?;
    let mut count = 0;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| TaskError::io("listing", dir, &e))?
    {
        if entry.file_type().await.is_ok_and(|t| t.is_file()) {
            count += 1;
        }
    }
    Ok(count)
}

async fn write(path: &Path, bytes: &[u8]) -> Result<(), TaskError> {
    tokio::fs::write(path, bytes)
        .await
        .map_err(|e| TaskError::io("writing", path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testkit;
    use crate::pipeline::Parameters;
    use serde_json::Value;

    /// Checks a single-file VOD HLS playlist: header, byte-range segments of the one `.ts`,
    /// end tag; returns the summed segment durations.
    fn check_hls(path: &Path, ts_name: &str) -> f64 {
        let text = std::fs::read_to_string(path).expect("playlist");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"#EXTM3U"), "{text}");
        assert!(lines.contains(&"#EXT-X-PLAYLIST-TYPE:VOD"), "{text}");
        assert_eq!(lines.last(), Some(&"#EXT-X-ENDLIST"), "{text}");
        let mut total = 0.0;
        let mut segments = 0;
        for (i, line) in lines.iter().enumerate() {
            if let Some(duration) = line.strip_prefix("#EXTINF:") {
                let duration: f64 = duration.trim_end_matches(',').parse().expect("duration");
                assert!(duration <= 2.1, "segment of {duration} s in {text}");
                total += duration;
                segments += 1;
                assert!(lines[i + 1].starts_with("#EXT-X-BYTERANGE:"), "{text}");
                assert_eq!(lines[i + 2], ts_name, "{text}");
            }
        }
        assert!(segments >= 2, "{text}");
        total
    }

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[tokio::test]
    async fn encodes_a_720p_clip_into_360p_and_720p_only() {
        let task = testkit::task(
            "Ma vidéo test.mp4",
            json!({"video_id": "42", "video_slug": "42-ma-video", "video_title": "Ma vidéo"}),
            false,
        );
        let ctx = &task.ctx;
        testkit::clip(&ctx.source, 1280, 720, 10, true);
        let summary = run(ctx, &ctx.source).await.expect("encodes");
        assert!(summary.contains("renditions 360p, 720p"), "{summary}");
        let out = &ctx.output_dir;
        let s = "Ma_video_test";
        for (height, width) in [(360, 640), (720, 1280)] {
            let mp4 = out.join(format!("{height}p_{s}.mp4"));
            let probed = testkit::ffprobe(&mp4);
            let v = probed.video.expect("video");
            assert_eq!((v.width, v.height), (width, height));
            assert!(probed.audio.is_some());
            assert!(close(probed.duration, 10.0, 0.2), "{}", probed.duration);
            let ts = out.join(format!("{height}p_{s}.ts"));
            assert_eq!(testkit::dimensions(&ts), (width, height));
            let hls = check_hls(
                &out.join(format!("{height}p_{s}.m3u8")),
                &format!("{height}p_{s}.ts"),
            );
            assert!(close(hls, 10.0, 0.2), "{hls}");
        }
        for absent in [
            format!("1080p_{s}.m3u8"),
            format!("1080p_{s}.mp4"),
            format!("audio_192k_{s}.m4a"),
        ] {
            assert!(!out.join(&absent).exists(), "{absent} must not exist");
        }
        let mp3 = testkit::ffprobe(&out.join(format!("audio_192k_{s}.mp3")));
        assert!(mp3.video.is_none() && mp3.audio.is_some());
        assert!(close(mp3.duration, 10.0, 0.2), "{}", mp3.duration);
        for i in 0..3 {
            assert_eq!(
                testkit::dimensions(&out.join(format!("{s}_{i}.png"))),
                (1280, 720)
            );
        }
        let info: Value =
            serde_json::from_slice(&std::fs::read(out.join("info_video.json")).expect("info"))
                .expect("json");
        let grid = &info["overview"];
        let (columns, rows) = (
            grid["columns"].as_u64().expect("columns"),
            grid["rows"].as_u64().expect("rows"),
        );
        let sprite = testkit::dimensions(&out.join("overview.png"));
        assert_eq!(
            (u64::from(sprite.0), u64::from(sprite.1)),
            (columns * 160, rows * 90)
        );
        let vtt = std::fs::read_to_string(out.join("overview.vtt")).expect("vtt");
        assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
        let cue =
            regex::Regex::new(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")
                .expect("regex");
        let mut cues = 0;
        let mut last_end = 0.0;
        for block in vtt.trim_end().split("\n\n").skip(1) {
            let mut lines = block.lines();
            let times = cue
                .captures(lines.next().expect("timing"))
                .expect("a cue timing line");
            let seconds = |i: usize| -> f64 {
                times[i].parse::<f64>().expect("h") * 3600.0
                    + times[i + 1].parse::<f64>().expect("m") * 60.0
                    + times[i + 2].parse::<f64>().expect("s")
                    + times[i + 3].parse::<f64>().expect("ms") / 1000.0
            };
            assert!(
                close(seconds(1), last_end, 1e-9) && seconds(5) > seconds(1),
                "{block}"
            );
            last_end = seconds(5);
            assert!(
                lines
                    .next()
                    .expect("payload")
                    .starts_with("overview.png#xywh="),
                "{block}"
            );
            cues += 1;
        }
        assert_eq!(cues, grid["count"].as_u64().expect("count"));
        assert!(close(last_end, 10.0, 0.1), "{last_end}");
        let master = std::fs::read_to_string(out.join("livestream.m3u8")).expect("master");
        assert!(
            master.starts_with("#EXTM3U")
                && master.contains(&format!("360p_{s}.m3u8"))
                && master.contains(&format!("720p_{s}.m3u8"))
                && !master.contains("1080p"),
            "{master}"
        );
        assert_eq!(info["video_id"], "42");
        assert_eq!(info["video_title"], "Ma vidéo");
        assert_eq!(
            (info["has_video"].clone(), info["has_audio"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(
            (info["width"].clone(), info["height"].clone()),
            (json!(1280), json!(720))
        );
        assert_eq!(info["ladder"].as_array().map(Vec::len), Some(2));
        let listed: Vec<&str> = info["encoded_files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["file"].as_str())
            .collect();
        for file in [
            format!("360p_{s}.mp4"),
            format!("720p_{s}.ts"),
            format!("{s}_2.png"),
            "overview.vtt".to_owned(),
        ] {
            assert!(listed.contains(&file.as_str()), "{file} in {listed:?}");
        }
        let log = std::fs::read_to_string(out.join("encoding.log")).expect("log");
        assert!(
            log.contains("[encode] $ ffmpeg")
                && log.contains("libx264")
                && log.contains("[thumbnails] $"),
            "{log}"
        );
        assert_eq!(ctx.progress.get(), 100.0);
    }

    #[tokio::test]
    async fn audio_only_source_gives_mp3_and_m4a_and_no_pictures() {
        let task = testkit::task("podcast.mp3", Value::Null, false);
        let ctx = &task.ctx;
        // With cover art, which ffprobe lists as a (one-frame) video stream.
        let cover = ctx.workspace.join("cover.png");
        testkit::generate(
            &cover,
            &["-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1"],
        );
        let cover_arg = cover.to_string_lossy().into_owned();
        testkit::generate(
            &ctx.source,
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=4",
                "-i",
                &cover_arg,
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "64k",
                "-c:v",
                "png",
                "-disposition:v:0",
                "attached_pic",
            ],
        );
        let summary = run(ctx, &ctx.source).await.expect("encodes");
        assert!(summary.starts_with("encoded 4.0 s of audio"), "{summary}");
        let mut files = paths::list_outputs(&ctx.output_dir).expect("list");
        files.sort();
        assert_eq!(
            files,
            [
                "audio_192k_podcast.m4a",
                "audio_192k_podcast.mp3",
                "encoding.log",
                "info_video.json"
            ]
        );
        for name in ["audio_192k_podcast.m4a", "audio_192k_podcast.mp3"] {
            let probed = testkit::ffprobe(&ctx.output_dir.join(name));
            assert!(probed.video.is_none() && probed.audio.is_some(), "{name}");
            assert!(
                close(probed.duration, 4.0, 0.2),
                "{name}: {}",
                probed.duration
            );
        }
    }

    #[tokio::test]
    async fn cut_then_dressing_then_ladder() {
        let task = testkit::task("talk.mp4", Value::Null, false);
        let media = tempfile::tempdir().expect("media dir");
        testkit::clip(&media.path().join("opening.mp4"), 320, 240, 1, false);
        testkit::generate(
            &media.path().join("logo.png"),
            &[
                "-f",
                "lavfi",
                "-i",
                "color=c=white:s=64x32",
                "-frames:v",
                "1",
            ],
        );
        let mut task = task;
        testkit::clip(&task.ctx.source, 320, 180, 4, true);
        // The loopback server stands in for the Pod host that serves dressing files.
        let base = testkit::serve_dir(media.path().to_owned()).await;
        task.ctx.parameters = Parameters(
            json!({
                "cut": r#"{"start":"00:00:01","end":"00:00:03"}"#,
                "dressing": json!({
                    "watermark": format!("{base}/logo.png"), "position": "bottom_left", "opacity": 50,
                    "opening_credits": format!("{base}/opening.mp4")
                }).to_string(),
            })
            .as_object()
            .expect("object")
            .clone(),
        );
        let ctx = &task.ctx;
        let summary = run(ctx, &ctx.source).await.expect("encodes");
        assert!(
            summary.contains("cut 00:00:01.000 - 00:00:03.000"),
            "{summary}"
        );
        assert!(
            summary.contains("dressing: watermark BottomLeft at 50%, opening credits"),
            "{summary}"
        );
        // 180 lines is below the smallest rung: one rendition at the source height.
        let mp4 = testkit::ffprobe(&ctx.output_dir.join("180p_talk.mp4"));
        let v = mp4.video.expect("video");
        assert_eq!((v.width, v.height), (320, 180));
        // 1 s of credits + 2 s kept by the cut.
        assert!(close(mp4.duration, 3.0, 0.25), "{}", mp4.duration);
        assert!(mp4.audio.is_some());
        assert!(ctx.workspace.join("dressing_watermark.png").exists());
        // The intermediates are gone once the encode succeeded.
        for scratch in [
            "encoding_cut.mkv",
            "encoding_dressed.mkv",
            "overview_frames",
        ] {
            assert!(
                !ctx.workspace.join(scratch).exists(),
                "{scratch} left behind"
            );
        }
        let info: Value = serde_json::from_slice(
            &std::fs::read(ctx.output_dir.join("info_video.json")).expect("info"),
        )
        .expect("json");
        assert_eq!(info["cut"], json!({"start": 1.0, "end": 3.0}));
        assert_eq!(info["dressing"]["position"], "bottom_left");
        assert!(close(
            info["source_duration"].as_f64().expect("duration"),
            4.0,
            0.1
        ));
    }

    #[tokio::test]
    async fn stop_and_timeout_come_back_untouched() {
        let task = testkit::task("long.mp4", Value::Null, false);
        let ctx = &task.ctx;
        testkit::clip(&ctx.source, 640, 360, 20, true);
        let cancel = ctx.process.cancel_token().clone();
        let progress = ctx.progress.clone();
        let stopper = tokio::spawn(async move {
            // Stop once the ladder encode is visibly under way.
            while progress.get() < 5.0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            cancel.cancel();
        });
        let result =
            tokio::time::timeout(std::time::Duration::from_secs(60), run(ctx, &ctx.source))
                .await
                .expect("the stop ends the task");
        assert_eq!(result.expect_err("stopped"), TaskError::Cancelled);
        stopper.await.expect("stopper");
        assert!(ctx.process.live_groups().is_empty());

        let task = testkit::task_with_timeout(
            "long.mp4",
            Value::Null,
            false,
            std::time::Duration::from_secs(1),
        );
        std::fs::copy(&ctx.source, &task.ctx.source).expect("copy");
        let error = run(&task.ctx, &task.ctx.source)
            .await
            .expect_err("timed out");
        assert_eq!(error, TaskError::Timeout(1));
    }

    #[tokio::test]
    async fn unusable_inputs_are_bad_input_with_the_reason() {
        let task = testkit::task("notes.mp4", Value::Null, false);
        let ctx = &task.ctx;
        std::fs::write(&ctx.source, "this is not a video\n").expect("write");
        let error = run(ctx, &ctx.source).await.expect_err("refused");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.contains("the source (notes.mp4) is not a media file ffprobe can read")),
            "{error}"
        );

        let mut task = testkit::task(
            "short.mp4",
            json!({"cut": r#"{"start":"00:00:01","end":"00:00:09"}"#}),
            false,
        );
        testkit::clip(&task.ctx.source, 160, 90, 2, false);
        let error = run(&task.ctx, &task.ctx.source).await.expect_err("refused");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.starts_with("parameter cut: end 00:00:09.000 is after the end of the media")),
            "{error}"
        );

        // Parameters are checked before anything runs: nothing is logged.
        task.ctx.parameters = Parameters(
            json!({"dressing": r#"{"watermark":"http://127.0.0.1/l.png","position":"center"}"#})
                .as_object()
                .expect("object")
                .clone(),
        );
        let _ = std::fs::remove_file(task.ctx.workspace.join("info_script.log"));
        let error = run(&task.ctx, &task.ctx.source).await.expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("parameter dressing: position \"center\""),
            "{error}"
        );
        assert!(!task.ctx.workspace.join("info_script.log").exists());
    }
}
