//! The `dressing` parameter: watermark and opening/closing credits, and the ffmpeg command that
//! applies them before the ladder.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::TaskError;
use crate::media::probe::{self, MediaInfo};
use crate::media::{clock, display_name, even_floor, ffmpeg_prelude};
use crate::pipeline::{EncodingType, TaskContext};
use crate::source::SourceKind;

use super::args::{intermediate_codecs, path_arg};

/// Corner of the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// Top left.
    TopLeft,
    /// Top right (the default).
    TopRight,
    /// Bottom left.
    BottomLeft,
    /// Bottom right.
    BottomRight,
}

impl Position {
    /// `top_left`, `top-right`, `Bottom Left`, ...
    fn parse(text: &str) -> Option<Position> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "top_left" => Some(Position::TopLeft),
            "top_right" => Some(Position::TopRight),
            "bottom_left" => Some(Position::BottomLeft),
            "bottom_right" => Some(Position::BottomRight),
            _ => None,
        }
    }
}

/// The `dressing` parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dressing {
    /// Image URL overlaid on the main video.
    pub watermark: Option<String>,
    /// Its corner.
    pub position: Position,
    /// Its opacity, 0..=100 percent.
    pub opacity: u8,
    /// Video URL played before the main video.
    pub opening_credits: Option<String>,
    /// Video URL played after it.
    pub ending_credits: Option<String>,
}

/// Reads `{"watermark":URL,"position":"top_left|top_right|bottom_left|bottom_right",
/// "opacity":0-100,"opening_credits":URL,"ending_credits":URL}` (any subset; other keys, such as
/// the title Pod sends, are ignored). `None` when there is nothing to apply.
pub fn parse_dressing(value: &Value) -> Result<Option<Dressing>, String> {
    let object = value.as_object().ok_or(
        "expected an object with watermark, position, opacity, opening_credits, ending_credits",
    )?;
    let url = |field: &str| -> Result<Option<String>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(format!("{field} {other} is not a URL")),
        }
    };
    let position = match object.get("position") {
        None | Some(Value::Null) => Position::TopRight,
        Some(Value::String(s)) if s.trim().is_empty() => Position::TopRight,
        Some(Value::String(s)) => Position::parse(s).ok_or_else(|| {
            format!("position {s:?} is not one of top_left, top_right, bottom_left, bottom_right")
        })?,
        Some(other) => return Err(format!("position {other} is not a string")),
    };
    let opacity = match object.get("opacity") {
        None | Some(Value::Null) => 100.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) if s.trim().is_empty() => 100.0,
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        Some(_) => f64::NAN,
    };
    if !(0.0..=100.0).contains(&opacity) {
        return Err(format!(
            "opacity {} is not a number from 0 to 100",
            object
                .get("opacity")
                .map(Value::to_string)
                .unwrap_or_default()
        ));
    }
    let dressing = Dressing {
        watermark: url("watermark")?,
        position,
        // Range-checked above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        opacity: opacity.round() as u8,
        opening_credits: url("opening_credits")?,
        ending_credits: url("ending_credits")?,
    };
    let any = dressing.watermark.is_some()
        || dressing.opening_credits.is_some()
        || dressing.ending_credits.is_some();
    Ok(any.then_some(dressing))
}

/// A credits video of the dressing, downloaded and probed.
#[derive(Debug, Clone)]
pub struct Credits {
    /// Local file.
    pub path: PathBuf,
    /// Its probe (must have video).
    pub info: MediaInfo,
}

/// Everything the dressing command needs.
#[derive(Debug, Clone)]
pub struct DressingJob {
    /// The main video (source, or its cut).
    pub main: PathBuf,
    /// Its probe (must have video).
    pub main_info: MediaInfo,
    /// Downloaded watermark image, with its corner and opacity.
    pub watermark: Option<(PathBuf, Position, u8)>,
    /// Opening credits.
    pub opening: Option<Credits>,
    /// Ending credits.
    pub ending: Option<Credits>,
}

impl DressingJob {
    /// Output duration (seconds): credits plus main.
    pub fn duration(&self) -> f64 {
        self.main_info.duration
            + self.opening.as_ref().map_or(0.0, |c| c.info.duration)
            + self.ending.as_ref().map_or(0.0, |c| c.info.duration)
    }
}

/// `ffmpeg` arguments of the dressing step. The watermark is scaled into a box of a fifth of the
/// main video's width and height and overlaid on the main video only (not on the credits), with
/// a margin of 1/40 of its height. Credits are fitted into the main video's size (letterboxed),
/// converted to its frame rate and pixel format, and concatenated before/after it; segments
/// without audio get silence (`anullsrc`) so the concatenation has one audio track whenever any
/// segment has audio.
pub fn dressing_args(job: &DressingJob, output: &Path, encoding: EncodingType) -> Vec<String> {
    let mut args = ffmpeg_prelude();
    let Some(video) = &job.main_info.video else {
        // The caller only dresses video sources; an empty command would fail loudly.
        return args;
    };
    let (width, height) = (even_floor(video.width), even_floor(video.height));
    let (sar_num, sar_den) = video.sample_aspect_ratio;
    let fps = format_rate(video.usable_frame_rate());
    args.extend(["-i".to_owned(), path_arg(&job.main)]);
    let mut next_input = 1;
    let mut add_input = |args: &mut Vec<String>, path: &Path| {
        args.extend(["-i".to_owned(), path_arg(path)]);
        let index = next_input;
        next_input += 1;
        index
    };
    let opening = job
        .opening
        .as_ref()
        .map(|c| (add_input(&mut args, &c.path), c));
    let ending = job
        .ending
        .as_ref()
        .map(|c| (add_input(&mut args, &c.path), c));
    let watermark = job
        .watermark
        .as_ref()
        .map(|(path, position, opacity)| (add_input(&mut args, path), *position, *opacity));

    let normalise = format!("fps={fps},format=yuv420p,setsar={sar_num}/{sar_den}");
    let audio_format = "aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo";
    let mut graph: Vec<String> = vec![format!(
        "[0:{}]scale={width}:{height},{normalise}[main_v]",
        video.index
    )];
    let mut main_video = "main_v".to_owned();
    if let Some((input, position, opacity)) = watermark {
        let margin = (height / 40).max(2);
        let (x, y) = match position {
            Position::TopLeft => (format!("{margin}"), format!("{margin}")),
            Position::TopRight => (format!("W-w-{margin}"), format!("{margin}")),
            Position::BottomLeft => (format!("{margin}"), format!("H-h-{margin}")),
            Position::BottomRight => (format!("W-w-{margin}"), format!("H-h-{margin}")),
        };
        graph.push(format!(
            "[{input}:v]scale={}:{}:force_original_aspect_ratio=decrease,format=rgba,colorchannelmixer=aa={:.2}[wm]",
            even_floor(width / 5),
            even_floor(height / 5),
            f64::from(opacity) / 100.0
        ));
        graph.push(format!(
            "[main_v][wm]overlay=x={x}:y={y}:format=auto,format=yuv420p[main_w]"
        ));
        main_video = "main_w".to_owned();
    }

    let segments_have_audio = job.main_info.audio.is_some()
        || opening.is_some_and(|(_, c)| c.info.audio.is_some())
        || ending.is_some_and(|(_, c)| c.info.audio.is_some());
    if opening.is_none() && ending.is_none() {
        args.extend(["-filter_complex".to_owned(), graph.join(";")]);
        args.extend(["-map".to_owned(), format!("[{main_video}]")]);
        if let Some(audio) = &job.main_info.audio {
            args.extend(["-map".to_owned(), format!("0:{}", audio.index)]);
        }
    } else {
        // Concatenation order: opening, main, ending; each segment gives [<name>_v] (+ [<name>_a]).
        let mut segments: Vec<String> = Vec::new();
        let credits_segment = |name: &str, input: usize, c: &Credits| -> Vec<String> {
            let Some(credits_video) = &c.info.video else {
                return Vec::new();
            };
            let mut filters = vec![format!(
                "[{input}:{}]scale={width}:{height}:force_original_aspect_ratio=decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,{normalise}[{name}_v]",
                credits_video.index
            )];
            if segments_have_audio {
                filters.push(match &c.info.audio {
                    Some(a) => format!("[{input}:{}]{audio_format}[{name}_a]", a.index),
                    None => silence(name, c.info.duration),
                });
            }
            filters
        };
        if let Some((input, c)) = opening {
            graph.extend(credits_segment("opening", input, c));
            segments.push("opening".to_owned());
        }
        graph.push(format!("[{main_video}]null[main_c_v]"));
        if segments_have_audio {
            graph.push(match &job.main_info.audio {
                Some(a) => format!("[0:{}]{audio_format}[main_c_a]", a.index),
                None => silence("main_c", job.main_info.duration),
            });
        }
        segments.push("main_c".to_owned());
        if let Some((input, c)) = ending {
            graph.extend(credits_segment("ending", input, c));
            segments.push("ending".to_owned());
        }
        let mut pads = String::new();
        for name in &segments {
            pads.push_str(&format!("[{name}_v]"));
            if segments_have_audio {
                pads.push_str(&format!("[{name}_a]"));
            }
        }
        let audio_outputs = u8::from(segments_have_audio);
        let outputs = if segments_have_audio {
            "[dressed_v][dressed_a]"
        } else {
            "[dressed_v]"
        };
        graph.push(format!(
            "{pads}concat=n={}:v=1:a={audio_outputs}{outputs}",
            segments.len()
        ));
        args.extend(["-filter_complex".to_owned(), graph.join(";")]);
        args.extend(["-map".to_owned(), "[dressed_v]".to_owned()]);
        if segments_have_audio {
            args.extend(["-map".to_owned(), "[dressed_a]".to_owned()]);
        }
    }
    args.extend(intermediate_codecs(encoding));
    args.push(path_arg(output));
    args
}

/// Silence as long as a segment without audio (concat needs audio in every segment).
fn silence(name: &str, duration: f64) -> String {
    format!(
        "anullsrc=r=48000:cl=stereo,atrim=duration={},aformat=sample_fmts=fltp:channel_layouts=stereo[{name}_a]",
        clock::ffmpeg_seconds(duration)
    )
}

/// A frame rate for the `fps` filter (`25`, `29.970`).
fn format_rate(rate: f64) -> String {
    if (rate - rate.round()).abs() < 1e-6 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.3}")
    }
}

pub(super) fn describe_dressing(dressing: &Dressing) -> String {
    let mut parts = Vec::new();
    if dressing.watermark.is_some() {
        parts.push(format!(
            "watermark {:?} at {}%",
            dressing.position, dressing.opacity
        ));
    }
    if dressing.opening_credits.is_some() {
        parts.push("opening credits".to_owned());
    }
    if dressing.ending_credits.is_some() {
        parts.push("ending credits".to_owned());
    }
    format!("dressing: {}", parts.join(", "))
}

/// Downloads the dressing's inputs and probes the credits.
pub(super) async fn prepare_dressing(
    ctx: &TaskContext,
    dressing: &Dressing,
    main: &Path,
    main_info: &MediaInfo,
) -> Result<DressingJob, TaskError> {
    let watermark = match &dressing.watermark {
        Some(url) => Some((
            crate::media::download(
                ctx,
                "dressing watermark",
                url,
                SourceKind::Image,
                "dressing_watermark",
            )
            .await?,
            dressing.position,
            dressing.opacity,
        )),
        None => None,
    };
    let credits = |what: &'static str, base: &'static str, url: Option<String>| async move {
        let Some(url) = url else { return Ok(None) };
        let path = crate::media::download(ctx, what, &url, SourceKind::Media, base).await?;
        let info = probe::probe(ctx, what, &path).await?;
        if info.video.is_none() {
            return Err(TaskError::BadInput(format!(
                "{what} ({}) has no video stream",
                display_name(&path)
            )));
        }
        Ok(Some(Credits { path, info }))
    };
    let opening = credits(
        "dressing opening credits",
        "dressing_opening",
        dressing.opening_credits.clone(),
    )
    .await?;
    let ending = credits(
        "dressing ending credits",
        "dressing_ending",
        dressing.ending_credits.clone(),
    )
    .await?;
    Ok(DressingJob {
        main: main.to_owned(),
        main_info: main_info.clone(),
        watermark,
        opening,
        ending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::testing::{audio, video};
    use crate::media::probe::{AudioStream, VideoStream};
    use crate::media::testkit::flag_values as values;
    use serde_json::json;

    #[test]
    fn dressing_parameter() {
        let full = parse_dressing(&json!({
            "watermark": "http://h/logo.png", "position": "bottom-left", "opacity": 35,
            "opening_credits": "http://h/in.mp4", "ending_credits": "", "title": "Pod dressing"
        }))
        .expect("valid")
        .expect("something to apply");
        assert_eq!(full.position, Position::BottomLeft);
        assert_eq!(full.opacity, 35);
        assert_eq!(full.ending_credits, None);
        assert_eq!(parse_dressing(&json!({"position": "top_left"})), Ok(None));
        for (value, expected) in [
            (
                json!({"watermark": "http://h/l.png", "position": "middle"}),
                "position \"middle\"",
            ),
            (
                json!({"watermark": "http://h/l.png", "opacity": 150}),
                "opacity 150",
            ),
            (
                json!({"watermark": "http://h/l.png", "opacity": "half"}),
                "opacity",
            ),
            (json!({"watermark": 3}), "watermark 3 is not a URL"),
            (json!("logo.png"), "expected an object"),
        ] {
            let error = parse_dressing(&value).expect_err("refused");
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    fn info(video: Option<VideoStream>, audio: Option<AudioStream>, duration: f64) -> MediaInfo {
        MediaInfo {
            duration,
            format_name: "mp4".to_owned(),
            size: None,
            bit_rate: None,
            video,
            audio,
        }
    }

    #[test]
    fn dressing_args_overlay_and_concatenate() {
        let watermark_only = DressingJob {
            main: "/w/main.mp4".into(),
            main_info: info(Some(video(1280, 720)), Some(audio()), 10.0),
            watermark: Some(("/w/logo.png".into(), Position::BottomRight, 50)),
            opening: None,
            ending: None,
        };
        let args = dressing_args(&watermark_only, Path::new("/w/d.mkv"), EncodingType::Cpu);
        assert_eq!(values(&args, "-i"), ["/w/main.mp4", "/w/logo.png"]);
        let graph = values(&args, "-filter_complex")[0];
        assert!(graph.contains("[1:v]scale=256:144:force_original_aspect_ratio=decrease,format=rgba,colorchannelmixer=aa=0.50[wm]"), "{graph}");
        assert!(graph.contains("overlay=x=W-w-18:y=H-h-18"), "{graph}");
        assert!(!graph.contains("concat"), "{graph}");
        assert_eq!(values(&args, "-map"), ["[main_w]", "0:1"]);

        // Credits: opening without audio gets silence; the main video has audio.
        let credits = |audio: Option<AudioStream>, duration| Credits {
            path: "/w/credits.mp4".into(),
            info: info(Some(video(640, 480)), audio, duration),
        };
        let job = DressingJob {
            watermark: None,
            opening: Some(credits(None, 3.0)),
            ending: Some(credits(Some(audio()), 2.0)),
            ..watermark_only.clone()
        };
        assert_eq!(job.duration(), 15.0);
        let args = dressing_args(&job, Path::new("/w/d.mkv"), EncodingType::Cpu);
        let graph = values(&args, "-filter_complex")[0];
        assert!(graph.contains("[1:0]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,fps=25,format=yuv420p,setsar=1/1[opening_v]"), "{graph}");
        assert!(
            graph.contains("anullsrc=r=48000:cl=stereo,atrim=duration=3.000"),
            "{graph}"
        );
        assert!(graph.contains("[2:1]aresample=48000"), "{graph}");
        assert!(graph.ends_with("[opening_v][opening_a][main_c_v][main_c_a][ending_v][ending_a]concat=n=3:v=1:a=1[dressed_v][dressed_a]"), "{graph}");
        assert_eq!(values(&args, "-map"), ["[dressed_v]", "[dressed_a]"]);

        // Nothing has audio: a video-only concatenation.
        let silent = DressingJob {
            main_info: info(Some(video(1280, 720)), None, 10.0),
            opening: Some(credits(None, 3.0)),
            ending: None,
            ..job
        };
        let args = dressing_args(&silent, Path::new("/w/d.mkv"), EncodingType::Cpu);
        let graph = values(&args, "-filter_complex")[0];
        assert!(
            graph.ends_with("[opening_v][main_c_v]concat=n=2:v=1:a=0[dressed_v]"),
            "{graph}"
        );
        assert!(!graph.contains("anullsrc"), "{graph}");
        assert_eq!(values(&args, "-map"), ["[dressed_v]"]);
    }
}
