//! The `encoding` pipeline: probe, optional cut, optional dressing (watermark, credits), then
//! one ffmpeg command that decodes the source once and writes every HLS/MP4 rendition, the mp3
//! and the overview frames, then the thumbnails, the overview sprite, `overview.vtt`,
//! `livestream.m3u8` and `info_video.json`.
//!
//! Output names (stem `S` = [`paths::output_stem`] of the source name):
//! - `{H}p_S.m3u8` + `{H}p_S.ts`: single-file HLS (byte ranges), 2 s segments, VOD playlist;
//! - `{H}p_S.mp4` for rungs with `encode_mp4` (faststart);
//! - `audio_192k_S.mp3` when there is audio, `audio_192k_S.m4a` too for audio-only sources;
//! - video sources: `S_0.png`, `S_1.png`, `S_2.png` (25/50/75 %), `overview.png` +
//!   `overview.vtt`, `livestream.m3u8` (master playlist of the HLS renditions);
//! - always: `info_video.json`, `encoding.log`.
//!
//! Argument building is pure (the `*_args` functions), so the CPU and GPU command lines are
//! tested without running ffmpeg.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::error::TaskError;
use crate::media::probe::{self, AudioStream, MediaInfo, VideoStream};
use crate::media::{
    clock, display_name, even_floor, even_round, ffmpeg_prelude, run_ffmpeg, split_range,
    EncodingLog, ProgressSpan,
};
use crate::paths;
use crate::pipeline::{EncodingType, Parameters, PipelineResult, TaskContext};
use crate::source::SourceKind;

/// x264 preset of the ladder. The rungs are bitrate-capped, so a slower preset buys a little
/// quality per bit at a large CPU cost; `veryfast` keeps a 2-core worker above real time on
/// 720p (see `wiki/benchmarks/encode.md`).
const X264_PRESET: &str = "veryfast";
/// NVENC preset (p1 fastest .. p7 best); p4 is NVIDIA's balanced default.
const NVENC_PRESET: &str = "p4";
/// HLS segment length; keyframes are forced on this grid so segments cut cleanly.
const HLS_SEGMENT_SECONDS: u32 = 2;
/// Bit rate of the `audio_192k_*` files.
const AUDIO_FILE_BITRATE: &str = "192k";
/// Thumbnails are posters: 720 lines are plenty and keep the PNGs small.
const THUMBNAIL_MAX_HEIGHT: u32 = 720;
/// Most frames in the overview sprite, and its columns.
const OVERVIEW_MAX_FRAMES: u32 = 100;
const OVERVIEW_COLUMNS: u32 = 10;
/// Width of one overview frame.
const OVERVIEW_CELL_WIDTH: u32 = 160;
/// A `cut` end this far past the duration is clamped (`HH:MM:SS` has whole seconds); further
/// is refused.
const CUT_END_TOLERANCE: f64 = 1.0;

/// A bit rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bitrate(u64);

impl Bitrate {
    /// `750k`, `2M`, `1.5M`, `96000`; between 1 kbit/s and 1 Gbit/s.
    pub fn parse(text: &str) -> Option<Bitrate> {
        let text = text.trim();
        let (number, scale) = match text.as_bytes().last()? {
            b'k' | b'K' => (&text[..text.len() - 1], 1e3),
            b'm' | b'M' => (&text[..text.len() - 1], 1e6),
            _ => (text, 1.0),
        };
        if number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            || number.bytes().filter(|&b| b == b'.').count() > 1
        {
            return None;
        }
        let bits = number.parse::<f64>().ok()? * scale;
        // Checked against the range first, so the cast is exact enough.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (1e3..=1e9)
            .contains(&bits)
            .then(|| Bitrate(bits.round() as u64))
    }

    /// `kbps` kbit/s.
    pub const fn from_kbps(kbps: u64) -> Bitrate {
        Bitrate(kbps * 1000)
    }

    /// Bits per second.
    pub fn bits(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}k", self.0 / 1000)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for Bitrate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rung {
    /// Output height; the width follows the source's aspect ratio (`scale=-2:H`).
    pub height: u32,
    /// The nominal resolution (`640x360`), as configured.
    pub resolution: String,
    /// Target video bit rate.
    pub video_bitrate: Bitrate,
    /// Peak video bit rate (default 1.5 x the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxrate: Option<Bitrate>,
    /// AAC bit rate.
    pub audio_bitrate: Bitrate,
    /// Whether an MP4 is written next to the HLS rendition.
    pub encode_mp4: bool,
}

impl Rung {
    fn new(height: u32, width: u32, video_kbps: u64, audio_kbps: u64, encode_mp4: bool) -> Rung {
        Rung {
            height,
            resolution: format!("{width}x{height}"),
            video_bitrate: Bitrate::from_kbps(video_kbps),
            maxrate: None,
            audio_bitrate: Bitrate::from_kbps(audio_kbps),
            encode_mp4,
        }
    }

    /// The peak rate (`-maxrate`).
    pub fn peak(&self) -> Bitrate {
        self.maxrate
            .unwrap_or(Bitrate(self.video_bitrate.0.saturating_mul(3) / 2))
    }
}

/// The ladder when the task has no `rendition` parameter.
pub fn default_ladder() -> Vec<Rung> {
    vec![
        Rung::new(360, 640, 750, 96, true),
        Rung::new(720, 1280, 2000, 128, true),
        Rung::new(1080, 1920, 3000, 192, false),
    ]
}

/// Reads the `rendition` parameter: an object keyed by height
/// (`{"360":{"resolution":"640x360","video_bitrate":"750k","audio_bitrate":"96k","encode_mp4":true}}`).
/// `video_bitrate` and `audio_bitrate` are required; `resolution` (its height must be the key),
/// `maxrate` and `encode_mp4` (default false) are optional; other keys (Pod sends `sites`,
/// `minrate`, ...) are ignored. Sorted by height.
pub fn parse_rendition(value: &Value) -> Result<Vec<Rung>, String> {
    let object = value
        .as_object()
        .ok_or("expected an object keyed by height, like {\"360\": {...}}")?;
    if object.is_empty() {
        return Err("no rendition given".to_owned());
    }
    let mut rungs: Vec<Rung> = Vec::new();
    for (key, spec) in object {
        let height: u32 = key
            .trim()
            .parse()
            .ok()
            .filter(|h| (16..=4320).contains(h))
            .ok_or_else(|| format!("key {key:?} is not a height between 16 and 4320"))?;
        if height % 2 == 1 {
            return Err(format!(
                "height {height} is odd (H.264 4:2:0 needs even sizes)"
            ));
        }
        if rungs.iter().any(|r| r.height == height) {
            return Err(format!("height {height} is given twice"));
        }
        let spec = spec
            .as_object()
            .ok_or_else(|| format!("{key:?}: expected an object, got {spec}"))?;
        let text = |field: &str| -> Option<String> {
            match spec.get(field)? {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let bitrate = |field: &str| -> Result<Option<Bitrate>, String> {
            text(field)
                .map(|t| {
                    Bitrate::parse(&t).ok_or_else(|| {
                        format!("{key:?}: {field} {t:?} is not a bit rate like 750k or 2M")
                    })
                })
                .transpose()
        };
        let required = |field: &str| -> Result<Bitrate, String> {
            bitrate(field)?.ok_or_else(|| format!("{key:?}: {field} is missing"))
        };
        let resolution = match text("resolution") {
            Some(r) => {
                let (w, h) = r
                    .split_once(['x', 'X'])
                    .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                    .filter(|&(w, h)| w > 0 && h > 0)
                    .ok_or_else(|| {
                        format!("{key:?}: resolution {r:?} is not WIDTHxHEIGHT like 640x360")
                    })?;
                if h != height {
                    return Err(format!(
                        "{key:?}: resolution {r:?} does not have height {height}"
                    ));
                }
                format!("{w}x{h}")
            }
            None => format!("{}x{height}", even_round(f64::from(height) * 16.0 / 9.0)),
        };
        let encode_mp4 = match spec.get("encode_mp4") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => false,
            Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
            Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
            Some(other) => return Err(format!("{key:?}: encode_mp4 {other} is not a boolean")),
        };
        rungs.push(Rung {
            height,
            resolution,
            video_bitrate: required("video_bitrate")?,
            maxrate: bitrate("maxrate")?,
            audio_bitrate: required("audio_bitrate")?,
            encode_mp4,
        });
    }
    rungs.sort_by_key(|r| r.height);
    Ok(rungs)
}

/// The width ffmpeg's `scale=-2:height` gives a `width`x`source_height` frame: the source width
/// scaled by the height ratio, rounded to the nearest even number.
pub fn scaled_width(width: u32, source_height: u32, height: u32) -> u32 {
    let (w, sh, h) = (
        u64::from(width),
        u64::from(source_height.max(1)),
        u64::from(height),
    );
    let halves = (h * w + sh) / (2 * sh);
    u32::try_from(halves * 2).unwrap_or(u32::MAX).max(2)
}

/// The rungs to encode for a source `video`: never upscale, so only rungs no taller than the
/// source; a source smaller than the smallest rung gets that rung's bit rates at its own (even)
/// height.
pub fn select_ladder(requested: &[Rung], video: &VideoStream) -> Vec<Rung> {
    let mut rungs = requested.to_vec();
    rungs.sort_by_key(|r| r.height);
    let fitting: Vec<Rung> = rungs
        .iter()
        .filter(|r| r.height <= video.height)
        .cloned()
        .collect();
    if !fitting.is_empty() {
        return fitting;
    }
    let Some(smallest) = rungs.first() else {
        return Vec::new();
    };
    let height = even_floor(video.height);
    vec![Rung {
        height,
        resolution: format!(
            "{}x{height}",
            scaled_width(video.width, video.height, height)
        ),
        ..smallest.clone()
    }]
}

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

/// Where the outputs of one encode go.
#[derive(Debug, Clone)]
pub struct Outputs {
    dir: PathBuf,
    stem: String,
}

impl Outputs {
    /// Outputs in `dir` named after `stem`.
    pub fn new(dir: &Path, stem: &str) -> Self {
        Outputs {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
        }
    }

    fn file(&self, name: String) -> PathBuf {
        self.dir.join(name)
    }

    /// `{H}p_S.m3u8`.
    pub fn hls(&self, height: u32) -> PathBuf {
        self.file(format!("{height}p_{}.m3u8", self.stem))
    }
    /// `{H}p_S.ts`, the single segment file ffmpeg writes next to the playlist.
    pub fn hls_segments(&self, height: u32) -> PathBuf {
        self.file(format!("{height}p_{}.ts", self.stem))
    }
    /// `{H}p_S.mp4`.
    pub fn mp4(&self, height: u32) -> PathBuf {
        self.file(format!("{height}p_{}.mp4", self.stem))
    }
    /// `audio_192k_S.mp3`.
    pub fn mp3(&self) -> PathBuf {
        self.file(format!("audio_{AUDIO_FILE_BITRATE}_{}.mp3", self.stem))
    }
    /// `audio_192k_S.m4a`.
    pub fn m4a(&self) -> PathBuf {
        self.file(format!("audio_{AUDIO_FILE_BITRATE}_{}.m4a", self.stem))
    }
    /// `S_{i}.png`.
    pub fn thumbnail(&self, i: usize) -> PathBuf {
        self.file(format!("{}_{i}.png", self.stem))
    }
    /// `overview.png`.
    pub fn overview_image(&self) -> PathBuf {
        self.file("overview.png".to_owned())
    }
    /// `overview.vtt`.
    pub fn overview_vtt(&self) -> PathBuf {
        self.file("overview.vtt".to_owned())
    }
    /// `livestream.m3u8`, the master playlist.
    pub fn master(&self) -> PathBuf {
        self.file("livestream.m3u8".to_owned())
    }
    /// `info_video.json`.
    pub fn info(&self) -> PathBuf {
        self.file("info_video.json".to_owned())
    }
    /// `encoding.log`.
    pub fn log(&self) -> PathBuf {
        self.file("encoding.log".to_owned())
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Video and audio codecs of intermediates (cut, dressed): near-lossless H.264 and FLAC in
/// Matroska, so the ladder encode starts from (almost) the source quality. Stream copy cannot
/// be used for the cut: it could only start on a keyframe.
fn intermediate_codecs(encoding: EncodingType) -> Vec<String> {
    let video = match encoding {
        EncodingType::Cpu => strings(&[
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
        ]),
        EncodingType::Gpu => strings(&[
            "-c:v",
            "h264_nvenc",
            "-preset",
            NVENC_PRESET,
            "-rc",
            "vbr",
            "-cq",
            "19",
            "-b:v",
            "0",
            "-pix_fmt",
            "yuv420p",
        ]),
    };
    [video, strings(&["-c:a", "flac"])].concat()
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

/// The overview sprite: one frame every `interval_ms`, `count` frames in a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OverviewGrid {
    /// Time between frames (ms), at least 1 s.
    pub interval_ms: u64,
    /// Frames (cues), at most 100.
    pub count: u32,
    /// Grid columns.
    pub columns: u32,
    /// Grid rows.
    pub rows: u32,
    /// Size of one frame.
    pub cell_width: u32,
    /// See `cell_width`.
    pub cell_height: u32,
}

/// The grid for a video of `duration` seconds: a frame per second, or 100 frames spread over
/// longer videos; frames 160 pixels wide with the display aspect ratio.
pub fn overview_grid(duration: f64, video: &VideoStream) -> OverviewGrid {
    // Durations are positive and far below u64 milliseconds.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total_ms = (duration.max(0.001) * 1000.0).ceil() as u64;
    let interval_ms = total_ms.div_ceil(u64::from(OVERVIEW_MAX_FRAMES)).max(1000);
    let count = u32::try_from(total_ms.div_ceil(interval_ms))
        .unwrap_or(OVERVIEW_MAX_FRAMES)
        .clamp(1, OVERVIEW_MAX_FRAMES);
    let columns = count.min(OVERVIEW_COLUMNS);
    OverviewGrid {
        interval_ms,
        count,
        columns,
        rows: count.div_ceil(columns),
        cell_width: OVERVIEW_CELL_WIDTH,
        cell_height: even_round(f64::from(OVERVIEW_CELL_WIDTH) / video.display_aspect()),
    }
}

impl OverviewGrid {
    /// The filter chain that picks and shrinks the overview frames from the decoded video.
    pub fn frames_filter(&self) -> String {
        format!(
            "fps=1000/{},scale={}:{},setsar=1",
            self.interval_ms, self.cell_width, self.cell_height
        )
    }

    /// The grid for the `count` frames actually written (the `fps` filter may stop one short
    /// of the planned count on a video that ends early).
    pub fn with_count(&self, count: u32) -> OverviewGrid {
        let count = count.clamp(1, OVERVIEW_MAX_FRAMES);
        let columns = count.min(OVERVIEW_COLUMNS);
        OverviewGrid {
            count,
            columns,
            rows: count.div_ceil(columns),
            ..*self
        }
    }

    /// `overview.vtt`: one cue per frame, pointing at its cell of `image`; the last cue runs to
    /// the end of the video.
    pub fn vtt(&self, duration: f64, image: &str) -> String {
        let mut vtt = String::from("WEBVTT\n");
        let interval = self.interval_ms as f64 / 1000.0;
        for i in 0..self.count {
            let start = f64::from(i) * interval;
            let end = if i + 1 == self.count {
                duration
            } else {
                (start + interval).min(duration)
            };
            if end <= start {
                break;
            }
            let x = (i % self.columns) * self.cell_width;
            let y = (i / self.columns) * self.cell_height;
            vtt.push_str(&format!(
                "\n{} --> {}\n{image}#xywh={x},{y},{},{}\n",
                clock::vtt_timestamp(start),
                clock::vtt_timestamp(end),
                self.cell_width,
                self.cell_height
            ));
        }
        vtt
    }
}

/// Escapes a file name for the `tee` muxer's slave list (`|` separates slaves, `\` and `'`
/// quote, brackets open options).
fn tee_escape(path: &Path) -> String {
    let mut escaped = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | '\'' | '|' | '[' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Everything the ladder command needs.
#[derive(Debug, Clone, Copy)]
pub struct LadderJob<'a> {
    /// Input file.
    pub input: &'a Path,
    /// Its video stream.
    pub video: &'a VideoStream,
    /// Its audio stream, if any.
    pub audio: Option<&'a AudioStream>,
    /// Rungs to encode (already selected: no upscaling).
    pub rungs: &'a [Rung],
    /// Where outputs go.
    pub outputs: &'a Outputs,
    /// The overview frames, taken from the same decode, and where they go (a `%03d.png`
    /// pattern).
    pub overview: Option<(&'a OverviewGrid, &'a Path)>,
    /// CPU or GPU.
    pub encoding: EncodingType,
}

/// `ffmpeg` arguments of the ladder: one decode split into every rung (and the overview
/// sprite); each rung encoded once, written as HLS and, with `encode_mp4`, also as MP4 through
/// the `tee` muxer; the mp3 from the same audio decode.
pub fn ladder_args(job: &LadderJob<'_>) -> Vec<String> {
    let gpu = job.encoding == EncodingType::Gpu;
    let mut args = ffmpeg_prelude();
    if gpu {
        // Decode on the GPU and keep frames there for scale_cuda and NVENC.
        args.extend(strings(&[
            "-hwaccel",
            "cuda",
            "-hwaccel_output_format",
            "cuda",
        ]));
    }
    args.extend(["-i".to_owned(), path_arg(job.input)]);

    let branches = job.rungs.len() + usize::from(job.overview.is_some());
    let mut graph = format!("[0:{}]split={branches}", job.video.index);
    for i in 0..job.rungs.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    if job.overview.is_some() {
        graph.push_str("[s_ov]");
    }
    for (i, rung) in job.rungs.iter().enumerate() {
        let scaler = if gpu { "scale_cuda" } else { "scale" };
        graph.push_str(&format!(";[s{i}]{scaler}=-2:{}[v{i}]", rung.height));
    }
    if let Some((grid, _)) = job.overview {
        // The frames are scaled on the CPU: GPU frames come down first (8 or 10 bit).
        let download = if gpu {
            "hwdownload,format=nv12|p010le,"
        } else {
            ""
        };
        graph.push_str(&format!(";[s_ov]{download}{}[ov]", grid.frames_filter()));
    }
    args.extend(["-filter_complex".to_owned(), graph]);

    let keyframes = format!("expr:gte(t,n_forced*{HLS_SEGMENT_SECONDS})");
    let hls_time = HLS_SEGMENT_SECONDS.to_string();
    for (i, rung) in job.rungs.iter().enumerate() {
        args.extend(["-map".to_owned(), format!("[v{i}]")]);
        if let Some(audio) = job.audio {
            args.extend(["-map".to_owned(), format!("0:{}", audio.index)]);
        }
        let bitrate = rung.video_bitrate.bits().to_string();
        let peak = rung.peak().bits().to_string();
        let buffer = rung.video_bitrate.bits().saturating_mul(2).to_string();
        if gpu {
            args.extend(strings(&[
                "-c:v",
                "h264_nvenc",
                "-preset",
                NVENC_PRESET,
                "-tune",
                "hq",
                "-profile:v",
                "high",
                "-rc",
                "vbr",
                "-forced-idr",
                "1",
            ]));
        } else {
            args.extend(strings(&[
                "-c:v",
                "libx264",
                "-preset",
                X264_PRESET,
                "-profile:v",
                "high",
                "-pix_fmt",
                "yuv420p",
            ]));
        }
        args.extend([
            "-b:v".to_owned(),
            bitrate,
            "-maxrate".to_owned(),
            peak,
            "-bufsize".to_owned(),
            buffer,
            "-force_key_frames".to_owned(),
            keyframes.clone(),
        ]);
        if let Some(audio) = job.audio {
            let channels = audio.channels.clamp(1, 2);
            args.extend([
                "-c:a".to_owned(),
                "aac".to_owned(),
                "-b:a".to_owned(),
                rung.audio_bitrate.bits().to_string(),
                "-ac".to_owned(),
                channels.to_string(),
            ]);
        }
        let hls = job.outputs.hls(rung.height);
        if rung.encode_mp4 {
            // One encode, two muxers. The MP4 needs the codec headers out of band, which tee
            // cannot negotiate per slave; MPEG-TS repeats them in band anyway.
            args.extend(strings(&["-flags", "+global_header", "-f", "tee"]));
            args.push(format!(
                "[f=hls:hls_time={hls_time}:hls_playlist_type=vod:hls_flags=single_file]{}|[f=mp4:movflags=+faststart]{}",
                tee_escape(&hls),
                tee_escape(&job.outputs.mp4(rung.height))
            ));
        } else {
            args.extend([
                "-f".to_owned(),
                "hls".to_owned(),
                "-hls_time".to_owned(),
                hls_time.clone(),
                "-hls_playlist_type".to_owned(),
                "vod".to_owned(),
                "-hls_flags".to_owned(),
                "single_file".to_owned(),
                path_arg(&hls),
            ]);
        }
    }
    if let Some(audio) = job.audio {
        args.extend([
            "-map".to_owned(),
            format!("0:{}", audio.index),
            "-c:a".to_owned(),
            "libmp3lame".to_owned(),
            "-b:a".to_owned(),
            AUDIO_FILE_BITRATE.to_owned(),
            path_arg(&job.outputs.mp3()),
        ]);
    }
    if let Some((grid, pattern)) = job.overview {
        // Single frames, not the tiled sprite: ffmpeg prints its first progress report only
        // once every output has started, and a tile would start only at the very end. The
        // frame cap drops a spare frame the fps filter may emit at the end.
        args.extend([
            "-map".to_owned(),
            "[ov]".to_owned(),
            "-frames:v".to_owned(),
            grid.count.to_string(),
            path_arg(pattern),
        ]);
    }
    args
}

/// `ffmpeg` arguments that tile the overview frames (`pattern`, numbered from 1) into the
/// sprite.
pub fn sprite_args(grid: &OverviewGrid, pattern: &Path, output: &Path) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y", "-nostats"]);
    args.extend([
        "-framerate".to_owned(),
        "1".to_owned(),
        "-start_number".to_owned(),
        "1".to_owned(),
        "-i".to_owned(),
        path_arg(pattern),
        "-filter:v".to_owned(),
        format!("tile={}x{}", grid.columns, grid.rows),
        "-frames:v".to_owned(),
        "1".to_owned(),
        "-update".to_owned(),
        "1".to_owned(),
        path_arg(output),
    ]);
    args
}

/// `ffmpeg` arguments for an audio-only source: the mp3 and the m4a.
pub fn audio_only_args(input: &Path, audio: &AudioStream, outputs: &Outputs) -> Vec<String> {
    let mut args = ffmpeg_prelude();
    let map = format!("0:{}", audio.index);
    args.extend(["-i".to_owned(), path_arg(input)]);
    args.extend([
        "-map".to_owned(),
        map.clone(),
        "-c:a".to_owned(),
        "libmp3lame".to_owned(),
        "-b:a".to_owned(),
        AUDIO_FILE_BITRATE.to_owned(),
        path_arg(&outputs.mp3()),
    ]);
    args.extend([
        "-map".to_owned(),
        map,
        "-c:a".to_owned(),
        "aac".to_owned(),
        "-b:a".to_owned(),
        AUDIO_FILE_BITRATE.to_owned(),
        "-movflags".to_owned(),
        "+faststart".to_owned(),
        path_arg(&outputs.m4a()),
    ]);
    args
}

/// Times of the three thumbnails: 25, 50 and 75 % of the duration.
pub fn thumbnail_times(duration: f64) -> [f64; 3] {
    [0.25, 0.5, 0.75].map(|f| duration * f)
}

/// `ffmpeg` arguments for the thumbnails: each one a fast seek (`-ss` before `-i` decodes from
/// the nearest keyframe only) and one frame, at the display aspect ratio, at most 720 high.
pub fn thumbnail_args(
    input: &Path,
    video: &VideoStream,
    duration: f64,
    outputs: &Outputs,
) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y", "-nostats"]);
    let times = thumbnail_times(duration);
    for time in times {
        args.extend([
            "-ss".to_owned(),
            clock::ffmpeg_seconds(time),
            "-i".to_owned(),
            path_arg(input),
        ]);
    }
    let height = even_floor(video.height.min(THUMBNAIL_MAX_HEIGHT));
    let width = even_round(f64::from(height) * video.display_aspect());
    for i in 0..times.len() {
        args.extend([
            "-map".to_owned(),
            format!("{i}:{}", video.index),
            "-frames:v".to_owned(),
            "1".to_owned(),
            "-filter:v".to_owned(),
            format!("scale={width}:{height},setsar=1"),
            "-update".to_owned(),
            "1".to_owned(),
            path_arg(&outputs.thumbnail(i)),
        ]);
    }
    args
}

/// `livestream.m3u8`: the HLS renditions, smallest first, with their peak bandwidth.
pub fn master_playlist(rungs: &[Rung], video: &VideoStream, has_audio: bool, stem: &str) -> String {
    let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:4\n");
    for rung in rungs {
        let audio = if has_audio {
            rung.audio_bitrate.bits()
        } else {
            0
        };
        playlist.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{}\n{}p_{stem}.m3u8\n",
            rung.peak().bits() + audio,
            rung.video_bitrate.bits() + audio,
            scaled_width(video.width, video.height, rung.height),
            rung.height,
            rung.height
        ));
    }
    playlist
}

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

fn describe_dressing(dressing: &Dressing) -> String {
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
async fn prepare_dressing(
    ctx: &TaskContext,
    dressing: &Dressing,
    main: &Path,
    main_info: &MediaInfo,
) -> Result<DressingJob, TaskError> {
    let watermark = match &dressing.watermark {
        Some(url) => Some((
            super::media::download(
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
        let path = super::media::download(ctx, what, &url, SourceKind::Media, base).await?;
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
    use crate::media::testkit;

    fn video(width: u32, height: u32) -> VideoStream {
        VideoStream {
            index: 0,
            codec: "h264".to_owned(),
            width,
            height,
            sample_aspect_ratio: (1, 1),
            frame_rate: Some(25.0),
        }
    }

    fn audio() -> AudioStream {
        AudioStream {
            index: 1,
            codec: "aac".to_owned(),
            channels: 2,
            sample_rate: 48000,
        }
    }

    fn heights(rungs: &[Rung]) -> Vec<u32> {
        rungs.iter().map(|r| r.height).collect()
    }

    use crate::media::testkit::flag_values as values;

    #[test]
    fn ladder_never_upscales() {
        let ladder = default_ladder();
        assert_eq!(
            heights(&select_ladder(&ladder, &video(1920, 1080))),
            [360, 720, 1080]
        );
        assert_eq!(
            heights(&select_ladder(&ladder, &video(1280, 720))),
            [360, 720]
        );
        assert_eq!(
            heights(&select_ladder(&ladder, &video(1778, 1000))),
            [360, 720]
        );
        // Smaller than the smallest rung: one rendition at the source height, 360's bit rates.
        let small = select_ladder(&ladder, &video(320, 240));
        assert_eq!(heights(&small), [240]);
        assert_eq!(small[0].resolution, "320x240");
        assert_eq!(small[0].video_bitrate, ladder[0].video_bitrate);
        assert!(small[0].encode_mp4);
        // Odd heights round down to even.
        assert_eq!(heights(&select_ladder(&ladder, &video(426, 239))), [238]);
        // 1080 is HLS only by default.
        assert!(!ladder[2].encode_mp4 && ladder[0].encode_mp4 && ladder[1].encode_mp4);
    }

    #[test]
    fn widths_follow_ffmpeg_minus_two() {
        assert_eq!(scaled_width(1280, 720, 360), 640);
        assert_eq!(scaled_width(1920, 1080, 720), 1280);
        assert_eq!(scaled_width(640, 480, 360), 480);
        assert_eq!(scaled_width(1080, 1920, 360), 202);
        assert_eq!(scaled_width(720, 576, 360), 450);
    }

    #[test]
    fn rendition_parameter() {
        let rungs = parse_rendition(&json!({
            "720": {"resolution": "1280x720", "video_bitrate": "2M", "audio_bitrate": "128k", "encode_mp4": "true", "sites": [1]},
            "360": {"resolution": "640x360", "video_bitrate": "750k", "maxrate": "1000k", "audio_bitrate": 96000, "encode_mp4": true}
        }))
        .expect("valid");
        assert_eq!(heights(&rungs), [360, 720]);
        assert_eq!(rungs[0].video_bitrate.bits(), 750_000);
        assert_eq!(rungs[0].peak().bits(), 1_000_000);
        assert_eq!(rungs[0].audio_bitrate.to_string(), "96k");
        assert_eq!(rungs[1].peak().bits(), 3_000_000);
        assert!(rungs[1].encode_mp4);
        let refusals = [
            (json!([1, 2]), "object keyed by height"),
            (json!({}), "no rendition"),
            (json!({"abc": {}}), "not a height"),
            (
                json!({"361": {"video_bitrate": "1M", "audio_bitrate": "96k"}}),
                "odd",
            ),
            (json!({"360": "fast"}), "expected an object"),
            (
                json!({"360": {"audio_bitrate": "96k"}}),
                "video_bitrate is missing",
            ),
            (
                json!({"360": {"video_bitrate": "lots", "audio_bitrate": "96k"}}),
                "not a bit rate",
            ),
            (
                json!({"360": {"resolution": "640x480", "video_bitrate": "1M", "audio_bitrate": "96k"}}),
                "does not have height 360",
            ),
            (
                json!({"360": {"resolution": "big", "video_bitrate": "1M", "audio_bitrate": "96k"}}),
                "WIDTHxHEIGHT",
            ),
            (
                json!({"360": {"video_bitrate": "1M", "audio_bitrate": "96k", "encode_mp4": "maybe"}}),
                "not a boolean",
            ),
        ];
        for (value, expected) in refusals {
            let error = parse_rendition(&value).expect_err("refused");
            assert!(error.contains(expected), "{value}: {error}");
        }
        assert_eq!(Bitrate::parse("1.5M"), Some(Bitrate(1_500_000)));
        for bad in ["", "k", "-1k", "1e6", "10", "2G", "1.2.3k"] {
            assert_eq!(Bitrate::parse(bad), None, "{bad:?}");
        }
    }

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

    fn ladder_job_args(encoding: EncodingType) -> Vec<String> {
        let outputs = Outputs::new(Path::new("/w/output"), "clip");
        let source = video(1920, 1080);
        let rungs = select_ladder(&default_ladder(), &source);
        let grid = overview_grid(60.0, &source);
        let pattern = PathBuf::from("/w/overview_frames/%03d.png");
        let audio = audio();
        ladder_args(&LadderJob {
            input: Path::new("/w/clip.mp4"),
            video: &source,
            audio: Some(&audio),
            rungs: &rungs,
            outputs: &outputs,
            overview: Some((&grid, &pattern)),
            encoding,
        })
    }

    #[test]
    fn cpu_ladder_is_one_decode_split_into_every_output() {
        let args = ladder_job_args(EncodingType::Cpu);
        assert_eq!(values(&args, "-i"), ["/w/clip.mp4"]);
        assert_eq!(
            values(&args, "-filter_complex"),
            ["[0:0]split=4[s0][s1][s2][s_ov];[s0]scale=-2:360[v0];[s1]scale=-2:720[v1];[s2]scale=-2:1080[v2];[s_ov]fps=1000/1000,scale=160:90,setsar=1[ov]"]
        );
        assert_eq!(values(&args, "-c:v"), ["libx264"; 3]);
        assert_eq!(values(&args, "-b:v"), ["750000", "2000000", "3000000"]);
        assert_eq!(values(&args, "-b:a"), ["96000", "128000", "192000", "192k"]);
        assert_eq!(
            values(&args, "-force_key_frames"),
            ["expr:gte(t,n_forced*2)"; 3]
        );
        // 360 and 720 go to HLS and MP4 from one encode; 1080 is HLS only.
        assert_eq!(values(&args, "-f"), ["tee", "tee", "hls"]);
        assert!(args.contains(&"[f=hls:hls_time=2:hls_playlist_type=vod:hls_flags=single_file]/w/output/360p_clip.m3u8|[f=mp4:movflags=+faststart]/w/output/360p_clip.mp4".to_owned()));
        assert!(args.contains(&"/w/output/1080p_clip.m3u8".to_owned()));
        assert_eq!(values(&args, "-hls_flags"), ["single_file"]);
        assert!(args.contains(&"/w/output/audio_192k_clip.mp3".to_owned()));
        // 60 overview frames, as files for the sprite step.
        assert!(args.ends_with(&[
            "-map".to_owned(),
            "[ov]".to_owned(),
            "-frames:v".to_owned(),
            "60".to_owned(),
            "/w/overview_frames/%03d.png".to_owned()
        ]));
        let sprite = sprite_args(
            &overview_grid(60.0, &video(1920, 1080)).with_count(59),
            Path::new("/w/f/%03d.png"),
            Path::new("/w/output/overview.png"),
        );
        assert_eq!(values(&sprite, "-filter:v"), ["tile=10x6"]);
        assert_eq!(values(&sprite, "-i"), ["/w/f/%03d.png"]);
        assert_eq!(
            sprite.last().map(String::as_str),
            Some("/w/output/overview.png")
        );
        assert!(!args
            .iter()
            .any(|a| a.contains("cuda") || a.contains("nvenc")));
        assert_eq!(&args[..6], ffmpeg_prelude().as_slice());
    }

    #[test]
    fn gpu_ladder_decodes_scales_and_encodes_on_the_gpu() {
        let args = ladder_job_args(EncodingType::Gpu);
        let input = args.iter().position(|a| a == "-i").expect("-i");
        assert_eq!(
            &args[input - 4..input],
            ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]
        );
        let graph = values(&args, "-filter_complex")[0];
        assert!(graph.contains("[s0]scale_cuda=-2:360[v0]"), "{graph}");
        assert!(graph.contains("[s2]scale_cuda=-2:1080[v2]"), "{graph}");
        assert!(
            graph.contains("[s_ov]hwdownload,format=nv12|p010le,fps="),
            "{graph}"
        );
        assert!(!graph.contains("]scale=-2"), "{graph}");
        assert_eq!(values(&args, "-c:v"), ["h264_nvenc"; 3]);
        assert_eq!(values(&args, "-preset"), ["p4"; 3]);
        assert_eq!(values(&args, "-rc"), ["vbr"; 3]);
        assert_eq!(values(&args, "-forced-idr"), ["1"; 3]);
        assert!(!args.contains(&"libx264".to_owned()));
        // CUDA frames carry their own format: no -pix_fmt conversion on the encoders.
        assert!(values(&args, "-pix_fmt").is_empty());
        // Intermediates use NVENC too.
        let cut = cut_args(
            Path::new("/w/in.mp4"),
            &MediaInfo {
                duration: 10.0,
                format_name: "mp4".to_owned(),
                size: None,
                bit_rate: None,
                video: Some(video(1280, 720)),
                audio: None,
            },
            Cut {
                start: 1.0,
                end: 4.0,
            },
            Path::new("/w/cut.mkv"),
            EncodingType::Gpu,
        );
        assert_eq!(values(&cut, "-c:v"), ["h264_nvenc"]);
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

    #[test]
    fn overview_grid_and_webvtt() {
        let grid = overview_grid(10.0, &video(1280, 720));
        assert_eq!(
            (grid.interval_ms, grid.count, grid.columns, grid.rows),
            (1000, 10, 10, 1)
        );
        assert_eq!((grid.cell_width, grid.cell_height), (160, 90));
        let long = overview_grid(3600.0, &video(640, 480));
        assert_eq!(
            (long.interval_ms, long.count, long.rows, long.cell_height),
            (36_000, 100, 10, 120)
        );
        let short = overview_grid(2.5, &video(1080, 1920));
        assert_eq!(
            (short.count, short.columns, short.rows, short.cell_height),
            (3, 3, 1, 284)
        );
        let vtt = short.vtt(2.5, "overview.png");
        // One frame short: the last cue runs to the end.
        let fewer = short.with_count(2);
        assert_eq!((fewer.columns, fewer.rows), (2, 1));
        assert!(fewer
            .vtt(2.5, "o.png")
            .ends_with("00:00:01.000 --> 00:00:02.500\no.png#xywh=160,0,160,284\n"));
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\noverview.png#xywh=0,0,160,284\n\n00:00:01.000 --> 00:00:02.000\noverview.png#xywh=160,0,160,284\n\n00:00:02.000 --> 00:00:02.500\noverview.png#xywh=320,0,160,284\n"
        );
        let cues = long.vtt(3600.0, "overview.png");
        assert!(
            cues.contains("00:59:24.000 --> 01:00:00.000\noverview.png#xywh=1440,1080,160,120"),
            "{cues}"
        );
    }

    #[test]
    fn thumbnails_and_master_playlist() {
        let outputs = Outputs::new(Path::new("/o"), "s");
        let args = thumbnail_args(Path::new("/in.mp4"), &video(1920, 1080), 20.0, &outputs);
        assert_eq!(values(&args, "-ss"), ["5.000", "10.000", "15.000"]);
        assert_eq!(values(&args, "-map"), ["0:0", "1:0", "2:0"]);
        assert_eq!(values(&args, "-filter:v"), ["scale=1280:720,setsar=1"; 3]);
        assert!(args.ends_with(&["/o/s_2.png".to_owned()]));
        let rungs = select_ladder(&default_ladder(), &video(1280, 720));
        assert_eq!(
            master_playlist(&rungs, &video(1280, 720), true, "s"),
            "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-STREAM-INF:BANDWIDTH=1221000,AVERAGE-BANDWIDTH=846000,RESOLUTION=640x360\n360p_s.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3128000,AVERAGE-BANDWIDTH=2128000,RESOLUTION=1280x720\n720p_s.m3u8\n"
        );
        assert_eq!(
            tee_escape(Path::new("/a|b/it's[1].mp4")),
            r"/a\|b/it\'s\[1\].mp4"
        );
    }

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
