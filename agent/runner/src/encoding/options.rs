//! What the parameters ask for: `cut`, `dressing` and `rendition` read once into
//! [`EncodingOptions`], and the cut command.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::TaskError;
use crate::media::probe::MediaInfo;
use crate::media::{clock, ffmpeg_prelude};
use crate::pipeline::{EncodingType, Parameters};

use super::args::{intermediate_codecs, path_arg};
use super::dressing::{parse_dressing, Dressing};
use super::ladder::{default_ladder, parse_rendition, Rung};

/// A `cut` end this far past the duration is clamped (`HH:MM:SS` has whole seconds); further
/// is refused.
const CUT_END_TOLERANCE: f64 = 1.0;

/// The `cut` parameter: keep `start..end` (seconds) of the source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cut {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
}

/// Reads `{"start":"HH:MM:SS","end":"HH:MM:SS"}` (fractions and plain seconds accepted).
pub fn parse_cut(value: &Value) -> Result<Cut, String> {
    let object = value
        .as_object()
        .ok_or("expected {\"start\": \"HH:MM:SS\", \"end\": \"HH:MM:SS\"}")?;
    let time = |field: &str| -> Result<f64, String> {
        match object.get(field) {
            Some(Value::String(s)) => clock::parse_hms(s)
                .ok_or_else(|| format!("{field} {s:?} is not a time like 00:01:30")),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| *v >= 0.0)
                .ok_or_else(|| format!("{field} {n} is not a time")),
            Some(other) => Err(format!("{field} {other} is not a time like 00:01:30")),
            None => Err(format!("{field} is missing")),
        }
    };
    let cut = Cut {
        start: time("start")?,
        end: time("end")?,
    };
    if cut.end <= cut.start {
        return Err(format!(
            "end ({}) must be after start ({})",
            clock::vtt_timestamp(cut.end),
            clock::vtt_timestamp(cut.start)
        ));
    }
    Ok(cut)
}

impl Cut {
    /// The cut for a source of `duration` seconds: refused when it starts after the end or ends
    /// well past it; an end just past the duration is clamped; `None` when it keeps everything.
    pub fn within(self, duration: f64) -> Result<Option<Cut>, String> {
        if self.start >= duration {
            return Err(format!(
                "start {} is not before the end of the media ({})",
                clock::vtt_timestamp(self.start),
                clock::vtt_timestamp(duration)
            ));
        }
        if self.end > duration + CUT_END_TOLERANCE {
            return Err(format!(
                "end {} is after the end of the media ({})",
                clock::vtt_timestamp(self.end),
                clock::vtt_timestamp(duration)
            ));
        }
        let end = self.end.min(duration);
        if self.start <= 0.0 && end >= duration {
            return Ok(None);
        }
        Ok(Some(Cut {
            start: self.start,
            end,
        }))
    }

    /// Length in seconds.
    pub fn duration(self) -> f64 {
        self.end - self.start
    }
}

/// The encoding parameters of a task, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodingOptions {
    /// The requested ladder (the default one without `rendition`).
    pub ladder: Vec<Rung>,
    /// `cut`, not yet checked against the duration.
    pub cut: Option<Cut>,
    /// `dressing`.
    pub dressing: Option<Dressing>,
    /// `video_id`, `video_slug`, `video_title`, copied into `info_video.json`.
    pub video_id: Option<String>,
    /// See `video_id`.
    pub video_slug: Option<String>,
    /// See `video_id`.
    pub video_title: Option<String>,
}

impl EncodingOptions {
    /// Reads and checks the parameters; a bad value is [`TaskError::BadInput`] naming the
    /// parameter and the reason.
    pub fn from_parameters(parameters: &Parameters) -> Result<Self, TaskError> {
        fn bad(key: &'static str) -> impl Fn(String) -> TaskError {
            move |reason| TaskError::BadInput(format!("parameter {key}: {reason}"))
        }
        let ladder = match parameters.json("rendition")? {
            Some(value) => parse_rendition(&value).map_err(bad("rendition"))?,
            None => default_ladder(),
        };
        let cut = match parameters.json("cut")? {
            Some(value) => Some(parse_cut(&value).map_err(bad("cut"))?),
            None => None,
        };
        let dressing = match parameters.json("dressing")? {
            Some(value) => parse_dressing(&value).map_err(bad("dressing"))?,
            None => None,
        };
        Ok(EncodingOptions {
            ladder,
            cut,
            dressing,
            video_id: parameters.text("video_id"),
            video_slug: parameters.text("video_slug"),
            video_title: parameters.text("video_title"),
        })
    }
}

/// `ffmpeg` arguments of the cut step: `start..end` of `info`'s streams into `output` (mkv).
pub fn cut_args(
    input: &Path,
    info: &MediaInfo,
    cut: Cut,
    output: &Path,
    encoding: EncodingType,
) -> Vec<String> {
    let mut args = ffmpeg_prelude();
    args.extend([
        "-ss".to_owned(),
        clock::ffmpeg_seconds(cut.start),
        "-i".to_owned(),
        path_arg(input),
        "-t".to_owned(),
        clock::ffmpeg_seconds(cut.duration()),
    ]);
    if let Some(video) = &info.video {
        // Odd sizes would make the 4:2:0 intermediate fail; the crop drops at most one line.
        args.extend([
            "-map".to_owned(),
            format!("0:{}", video.index),
            "-filter:v".to_owned(),
            "crop=trunc(iw/2)*2:trunc(ih/2)*2".to_owned(),
        ]);
    }
    if let Some(audio) = &info.audio {
        args.extend(["-map".to_owned(), format!("0:{}", audio.index)]);
    }
    args.extend(intermediate_codecs(encoding));
    args.push(path_arg(output));
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::dressing::Position;
    use crate::encoding::testing::{audio, heights, video};
    use crate::media::testkit::flag_values as values;
    use serde_json::json;

    #[test]
    fn parameters_arrive_as_json_strings() {
        let parameters = Parameters(
            json!({
                "rendition": "{\"480\":{\"resolution\":\"854x480\",\"video_bitrate\":\"1000k\",\"audio_bitrate\":\"128k\"}}",
                "cut": "{\"start\":\"00:00:01\",\"end\":\"00:00:03\"}",
                "dressing": "{\"watermark\":\"http://h/logo.png\",\"opacity\":\"40\"}",
                "video_id": 42,
                "video_title": "Été"
            })
            .as_object()
            .expect("object")
            .clone(),
        );
        let options = EncodingOptions::from_parameters(&parameters).expect("valid");
        assert_eq!(heights(&options.ladder), [480]);
        assert_eq!(
            options.cut,
            Some(Cut {
                start: 1.0,
                end: 3.0
            })
        );
        let dressing = options.dressing.expect("dressing");
        assert_eq!(
            (dressing.position, dressing.opacity),
            (Position::TopRight, 40)
        );
        assert_eq!(options.video_id.as_deref(), Some("42"));
        assert_eq!(options.video_title.as_deref(), Some("Été"));

        let bad = Parameters(
            json!({"cut": "{not json"})
                .as_object()
                .expect("object")
                .clone(),
        );
        let error = EncodingOptions::from_parameters(&bad).expect_err("refused");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.contains("parameter cut: not valid JSON")),
            "{error}"
        );
        let bad = Parameters(
            json!({"rendition": {"360": {}}})
                .as_object()
                .expect("object")
                .clone(),
        );
        let error = EncodingOptions::from_parameters(&bad).expect_err("refused");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.starts_with("parameter rendition: ")),
            "{error}"
        );
    }

    #[test]
    fn cut_parameter() {
        let cut = parse_cut(&json!({"start": "00:00:02", "end": "00:01:00.5"})).expect("valid");
        assert_eq!(
            cut,
            Cut {
                start: 2.0,
                end: 60.5
            }
        );
        assert_eq!(cut.within(100.0), Ok(Some(cut)));
        // Just past the end (whole seconds): clamped; keeping everything: no cut at all.
        assert_eq!(
            cut.within(60.2),
            Ok(Some(Cut {
                start: 2.0,
                end: 60.2
            }))
        );
        let all = parse_cut(&json!({"start": "00:00:00", "end": "00:00:10"})).expect("valid");
        assert_eq!(all.within(9.6), Ok(None));
        assert!(cut
            .within(50.0)
            .expect_err("too long")
            .contains("after the end of the media"));
        assert!(Cut {
            start: 20.0,
            end: 30.0
        }
        .within(10.0)
        .expect_err("late")
        .contains("start"));
        for (value, expected) in [
            (
                json!({"start": "00:00:05", "end": "00:00:05"}),
                "must be after start",
            ),
            (
                json!({"start": "00:00:09", "end": "00:00:03"}),
                "must be after start",
            ),
            (json!({"start": "00:00:01"}), "end is missing"),
            (json!({"start": "soon", "end": "00:00:03"}), "not a time"),
            (
                json!({"start": "00:00:01", "end": "00:99:00"}),
                "not a time",
            ),
            (json!("00:00:01-00:00:02"), "expected"),
        ] {
            let error = parse_cut(&value).expect_err("refused");
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn cut_args_seek_then_limit() {
        let info = MediaInfo {
            duration: 10.0,
            format_name: "mp4".to_owned(),
            size: None,
            bit_rate: None,
            video: Some(video(1280, 720)),
            audio: Some(audio()),
        };
        let args = cut_args(
            Path::new("/w/in.mp4"),
            &info,
            Cut {
                start: 1.5,
                end: 4.0,
            },
            Path::new("/w/cut.mkv"),
            EncodingType::Cpu,
        );
        let ss = args.iter().position(|a| a == "-ss").expect("-ss");
        assert_eq!(
            &args[ss..ss + 6],
            ["-ss", "1.500", "-i", "/w/in.mp4", "-t", "2.500"]
        );
        assert_eq!(values(&args, "-map"), ["0:0", "0:1"]);
        assert_eq!(values(&args, "-c:a"), ["flac"]);
        assert_eq!(args.last().map(String::as_str), Some("/w/cut.mkv"));
    }
}
