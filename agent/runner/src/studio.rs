//! The `studio` pipeline: an Opencast Studio recording (a mediapackage XML with a presenter
//! and/or a presentation track, optionally a SMIL cutting catalog) composited into
//! `output/studio_base.mp4`, which is then encoded like any source, with the stem
//! `studio_base` (`360p_studio_base.m3u8`, ...).
//!
//! Layouts (root attribute `presenter`, overridden by the `presenter` parameter; default `mid`):
//! - `mid`: presenter (left) and presentation (right) side by side, both scaled to the same
//!   height (the taller track's, at most 720), each keeping its aspect ratio;
//! - `piph` / `pipb`: the presentation full frame (at most 1080 high) with the presenter at a
//!   quarter of its height in the top-right / bottom-right corner.
//!
//! With only one video track, it is used alone. Audio comes from the presenter track when it
//! has audio, else from the presentation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::encoding::{self, Bitrate, EncodingOptions};
use crate::error::TaskError;
use crate::media::probe::{self, MediaInfo, VideoStream};
use crate::media::{
    clock, download, even_floor, even_round, ffmpeg_prelude, run_ffmpeg, EncodingLog, ProgressSpan,
};
use crate::pipeline::{EncodingType, MediaConfig, Parameters, PipelineResult, TaskContext};
use crate::source::SourceKind;

/// The namespace of Opencast mediapackages.
pub const MEDIAPACKAGE_NS: &str = "http://mediapackage.opencastproject.org";
/// The composite, in the output directory (the Python runner publishes it too).
pub const BASE_NAME: &str = "studio_base.mp4";
/// The stem of the encoded outputs.
pub const BASE_STEM: &str = "studio_base";
/// Share of the progress for the composite; the encoding of the composite gets the rest.
const COMPOSITE_PROGRESS: f64 = 40.0;
/// Tallest composite for `mid` (two tracks side by side get wide quickly).
const MID_MAX_HEIGHT: u32 = 720;
/// Tallest composite for the picture-in-picture layouts and for a single track.
const FULL_MAX_HEIGHT: u32 = 1080;
/// x264 presets `studio_preset` accepts.
const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// How presenter and presentation are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Side by side.
    Mid,
    /// Presentation with the presenter in the top-right corner.
    Piph,
    /// Presentation with the presenter in the bottom-right corner.
    Pipb,
}

impl Layout {
    /// `mid`, `piph`, `pipb` (any case).
    pub fn parse(name: &str) -> Option<Layout> {
        match name.trim().to_ascii_lowercase().as_str() {
            "mid" => Some(Layout::Mid),
            "piph" => Some(Layout::Piph),
            "pipb" => Some(Layout::Pipb),
            _ => None,
        }
    }

    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Mid => "mid",
            Layout::Piph => "piph",
            Layout::Pipb => "pipb",
        }
    }
}

/// What the mediapackage says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mediapackage {
    /// The root's `presenter` attribute (the layout), if any.
    pub layout: Option<String>,
    /// URL of the `presenter/source` track.
    pub presenter: Option<String>,
    /// URL of the `presentation/source` track.
    pub presentation: Option<String>,
    /// URL of the `smil/cutting` catalog.
    pub cutting: Option<String>,
}

/// Whether `node` is the element `local` of the mediapackage namespace (prefixed or default),
/// or of no namespace (hand-written mediapackages often omit it).
fn is_element(node: roxmltree::Node<'_, '_>, local: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == local
        && node
            .tag_name()
            .namespace()
            .is_none_or(|ns| ns == MEDIAPACKAGE_NS)
}

/// The text of the `<url>` child of `node`.
fn url_child(node: roxmltree::Node<'_, '_>) -> Option<String> {
    node.children()
        .find(|c| is_element(*c, "url"))
        .and_then(|u| u.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Reads a mediapackage. Refuses, with the reason, documents that are not XML, not a
/// mediapackage, or have neither source track, or a source track without URL.
pub fn parse_mediapackage(xml: &str) -> Result<Mediapackage, TaskError> {
    let bad = |m: String| TaskError::BadInput(format!("mediapackage: {m}"));
    let document =
        roxmltree::Document::parse(xml).map_err(|e| bad(format!("not valid XML: {e}")))?;
    let root = document.root_element();
    if !is_element(root, "mediapackage") {
        return Err(bad(format!(
            "the root element is <{}> (namespace {}), expected <mediapackage> in {MEDIAPACKAGE_NS}",
            root.tag_name().name(),
            root.tag_name().namespace().unwrap_or("none")
        )));
    }
    let mut package = Mediapackage {
        layout: root.attribute("presenter").map(str::to_owned),
        ..Mediapackage::default()
    };
    let mut types_seen: Vec<String> = Vec::new();
    for track in root.descendants().filter(|n| is_element(*n, "track")) {
        let kind = track.attribute("type").unwrap_or_default().trim();
        types_seen.push(if kind.is_empty() {
            "(no type)".to_owned()
        } else {
            kind.to_owned()
        });
        let slot = match kind {
            "presenter/source" => &mut package.presenter,
            "presentation/source" => &mut package.presentation,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(
                url_child(track).ok_or_else(|| bad(format!("the {kind} track has no <url>")))?,
            );
        }
    }
    if package.presenter.is_none() && package.presentation.is_none() {
        let seen = if types_seen.is_empty() {
            "no tracks at all".to_owned()
        } else {
            format!("tracks found: {}", types_seen.join(", "))
        };
        return Err(bad(format!(
            "no presenter/source or presentation/source track ({seen})"
        )));
    }
    package.cutting = root
        .descendants()
        .filter(|n| is_element(*n, "catalog"))
        .find(|c| c.attribute("type").map(str::trim) == Some("smil/cutting"))
        .map(|c| {
            url_child(c).ok_or_else(|| bad("the smil/cutting catalog has no <url>".to_owned()))
        })
        .transpose()?;
    Ok(package)
}

/// The part of the recording a SMIL cutting catalog keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmilCut {
    /// `clipBegin`, seconds (0 when absent).
    pub begin: f64,
    /// `clipEnd`, seconds (to the end when absent).
    pub end: Option<f64>,
}

/// Reads the first `<video clipBegin=".." clipEnd="..">` of a SMIL document (any namespace);
/// `None` when it has no clip attributes. Clock values as SMIL writes them (`1.5s`, `1500ms`,
/// `00:00:01.500`, ...).
pub fn parse_smil_cut(xml: &str) -> Result<Option<SmilCut>, TaskError> {
    let bad = |m: String| TaskError::BadInput(format!("SMIL cutting catalog: {m}"));
    let document =
        roxmltree::Document::parse(xml).map_err(|e| bad(format!("not valid XML: {e}")))?;
    let Some(video) = document
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "video")
    else {
        return Ok(None);
    };
    // SMIL 1.0 spelled them clip-begin / clip-end.
    let attribute = |names: [&str; 2]| -> Result<Option<f64>, TaskError> {
        let Some((name, value)) = names
            .iter()
            .find_map(|n| video.attribute(*n).map(|v| (*n, v)))
        else {
            return Ok(None);
        };
        clock::parse_smil_clock(value)
            .map(Some)
            .ok_or_else(|| bad(format!("{name} {value:?} is not a SMIL clock value")))
    };
    let begin = attribute(["clipBegin", "clip-begin"])?;
    let end = attribute(["clipEnd", "clip-end"])?;
    if begin.is_none() && end.is_none() {
        return Ok(None);
    }
    let cut = SmilCut {
        begin: begin.unwrap_or(0.0),
        end,
    };
    if let Some(end) = cut.end {
        if end <= cut.begin {
            return Err(bad(format!(
                "clipEnd ({}) is not after clipBegin ({})",
                clock::vtt_timestamp(end),
                clock::vtt_timestamp(cut.begin)
            )));
        }
    }
    Ok(Some(cut))
}

/// The studio parameters (the encoding ones are read by the encoding step).
#[derive(Debug, Clone, PartialEq)]
pub struct StudioOptions {
    /// `presenter`: the layout, overriding the mediapackage's.
    pub layout: Option<Layout>,
    /// `force_cpu`: libx264 even when `ENCODING_TYPE=GPU` (composite and encoding).
    pub force_cpu: bool,
    /// `studio_crf` (0..=51, default 23): quality of the composite.
    pub crf: u8,
    /// `studio_preset` (x264 preset, default `medium`).
    pub preset: String,
    /// `studio_audio_bitrate` (default 128k).
    pub audio_bitrate: Bitrate,
}

impl StudioOptions {
    /// Reads and checks the studio parameters.
    pub fn from_parameters(parameters: &Parameters) -> Result<StudioOptions, TaskError> {
        let bad = |key: &str, m: String| TaskError::BadInput(format!("parameter {key}: {m}"));
        let layout = match parameters.text("presenter") {
            Some(name) => Some(Layout::parse(&name).ok_or_else(|| {
                bad(
                    "presenter",
                    format!("layout {name:?} is not one of mid, piph, pipb"),
                )
            })?),
            None => None,
        };
        let crf = match parameters.text("studio_crf") {
            Some(text) => text
                .parse::<u8>()
                .ok()
                .filter(|c| *c <= 51)
                .ok_or_else(|| {
                    bad(
                        "studio_crf",
                        format!("{text:?} is not an integer from 0 to 51"),
                    )
                })?,
            None => 23,
        };
        let preset = match parameters.text("studio_preset") {
            Some(text) => {
                let lower = text.to_ascii_lowercase();
                if !X264_PRESETS.contains(&lower.as_str()) {
                    return Err(bad(
                        "studio_preset",
                        format!("{text:?} is not one of {}", X264_PRESETS.join(", ")),
                    ));
                }
                lower
            }
            None => "medium".to_owned(),
        };
        let audio_bitrate = match parameters.text("studio_audio_bitrate") {
            Some(text) => Bitrate::parse(&text).ok_or_else(|| {
                bad(
                    "studio_audio_bitrate",
                    format!("{text:?} is not a bit rate like 128k"),
                )
            })?,
            None => Bitrate::from_kbps(128),
        };
        Ok(StudioOptions {
            layout,
            force_cpu: parameters.flag("force_cpu").unwrap_or(false),
            crf,
            preset,
            audio_bitrate,
        })
    }
}

/// A downloaded, probed track.
#[derive(Debug, Clone)]
pub struct Track {
    /// Local file.
    pub path: PathBuf,
    /// Its probe.
    pub info: MediaInfo,
}

/// Everything the composite command needs.
#[derive(Debug, Clone, Copy)]
pub struct CompositeJob<'a> {
    /// The presenter track.
    pub presenter: Option<&'a Track>,
    /// The presentation track.
    pub presentation: Option<&'a Track>,
    /// The layout (for two video tracks).
    pub layout: Layout,
    /// The SMIL cut.
    pub cut: Option<SmilCut>,
    /// Studio parameters.
    pub options: &'a StudioOptions,
    /// CPU or GPU (after `force_cpu`).
    pub encoding: EncodingType,
    /// `output/studio_base.mp4`.
    pub output: &'a Path,
}

/// The composite command and what it will produce.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositePlan {
    /// `ffmpeg` arguments.
    pub args: Vec<String>,
    /// Output size (`None` for audio only).
    pub size: Option<(u32, u32)>,
    /// Expected output duration, seconds.
    pub duration: f64,
    /// What was composed, for the summary (`mid: presenter + presentation`).
    pub description: String,
}

/// Builds the composite command. Refuses a cut that starts after the recording ends, and
/// recordings with neither video nor audio.
pub fn composite_plan(job: &CompositeJob<'_>) -> Result<CompositePlan, TaskError> {
    let mut args = ffmpeg_prelude();
    let mut inputs: Vec<(&'static str, &Track)> = Vec::new();
    if let Some(t) = job.presenter {
        inputs.push(("presenter", t));
    }
    if let Some(t) = job.presentation {
        inputs.push(("presentation", t));
    }
    let longest = inputs
        .iter()
        .map(|(_, t)| t.info.duration)
        .fold(0.0, f64::max);
    let (start, duration) = match job.cut {
        Some(cut) => {
            if cut.begin >= longest {
                return Err(TaskError::BadInput(format!(
                    "SMIL cutting catalog: clipBegin {} is after the end of the recording ({})",
                    clock::vtt_timestamp(cut.begin),
                    clock::vtt_timestamp(longest)
                )));
            }
            let end = cut.end.map_or(longest, |e| e.min(longest));
            (cut.begin, end - cut.begin)
        }
        None => (0.0, longest),
    };
    for (_, track) in &inputs {
        if start > 0.0 {
            args.extend(["-ss".to_owned(), clock::ffmpeg_seconds(start)]);
        }
        args.extend(["-i".to_owned(), track.path.to_string_lossy().into_owned()]);
    }
    let input_of = |name: &str| inputs.iter().position(|(n, _)| *n == name);
    let video_of = |name: &str| -> Option<(usize, &VideoStream)> {
        let i = input_of(name)?;
        inputs[i].1.info.video.as_ref().map(|v| (i, v))
    };
    let presenter_video = video_of("presenter");
    let presentation_video = video_of("presentation");
    let fps = [presenter_video, presentation_video]
        .iter()
        .flatten()
        .map(|(_, v)| v.usable_frame_rate())
        .fold(0.0, f64::max);
    let fps = format!("{:.3}", if fps > 0.0 { fps } else { 25.0 })
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned();
    let scaled = |input: usize, video: &VideoStream, width: u32, height: u32, label: &str| {
        format!(
            "[{input}:{}]fps={fps},scale={width}:{height},setsar=1[{label}]",
            video.index
        )
    };
    let (graph, size, description) = match (presenter_video, presentation_video) {
        (Some((pi, pv)), Some((si, sv))) => match job.layout {
            Layout::Mid => {
                let height = even_floor(pv.height.max(sv.height).min(MID_MAX_HEIGHT));
                let left = even_round(f64::from(height) * pv.display_aspect());
                let right = even_round(f64::from(height) * sv.display_aspect());
                (
                    format!(
                        "{};{};[left][right]hstack=inputs=2[v]",
                        scaled(pi, pv, left, height, "left"),
                        scaled(si, sv, right, height, "right")
                    ),
                    Some((left + right, height)),
                    "presenter + presentation side by side".to_owned(),
                )
            }
            Layout::Piph | Layout::Pipb => {
                let height = even_floor(sv.height.min(FULL_MAX_HEIGHT));
                let width = even_round(f64::from(height) * sv.display_aspect());
                let pip_height = even_floor(height / 4);
                let pip_width = even_round(f64::from(pip_height) * pv.display_aspect());
                let margin = (height / 40).max(2);
                let x = width.saturating_sub(pip_width + margin);
                let y = if job.layout == Layout::Piph {
                    margin
                } else {
                    height.saturating_sub(pip_height + margin)
                };
                // eof_action=pass: if the presenter track is shorter, the presentation goes on.
                (
                    format!(
                        "{};{};[base][pip]overlay=x={x}:y={y}:eof_action=pass[v]",
                        scaled(si, sv, width, height, "base"),
                        scaled(pi, pv, pip_width, pip_height, "pip")
                    ),
                    Some((width, height)),
                    format!(
                        "presentation with the presenter {}",
                        if job.layout == Layout::Piph {
                            "top right"
                        } else {
                            "bottom right"
                        }
                    ),
                )
            }
        },
        (Some((i, v)), None) | (None, Some((i, v))) => {
            let height = even_floor(v.height.min(FULL_MAX_HEIGHT));
            let width = even_round(f64::from(height) * v.display_aspect());
            (
                scaled(i, v, width, height, "v"),
                Some((width, height)),
                format!("{} track only", inputs[i].0),
            )
        }
        (None, None) => (String::new(), None, "audio only".to_owned()),
    };
    let audio = ["presenter", "presentation"].iter().find_map(|name| {
        let i = input_of(name)?;
        inputs[i].1.info.audio.as_ref().map(|a| (i, a.index, *name))
    });
    if size.is_none() && audio.is_none() {
        return Err(TaskError::BadInput(
            "the studio tracks have no video and no audio".to_owned(),
        ));
    }
    if size.is_some() {
        args.extend([
            "-filter_complex".to_owned(),
            graph,
            "-map".to_owned(),
            "[v]".to_owned(),
        ]);
        let crf = job.options.crf.to_string();
        match job.encoding {
            EncodingType::Cpu => args.extend([
                "-c:v".to_owned(),
                "libx264".to_owned(),
                "-preset".to_owned(),
                job.options.preset.clone(),
                "-crf".to_owned(),
                crf,
            ]),
            // NVENC has no CRF; constant quality (-cq) with no bit rate target is the closest.
            EncodingType::Gpu => args.extend([
                "-c:v".to_owned(),
                "h264_nvenc".to_owned(),
                "-preset".to_owned(),
                "p4".to_owned(),
                "-rc".to_owned(),
                "vbr".to_owned(),
                "-cq".to_owned(),
                crf,
                "-b:v".to_owned(),
                "0".to_owned(),
            ]),
        }
        args.extend(["-pix_fmt".to_owned(), "yuv420p".to_owned()]);
    }
    let mut description = description;
    if let Some((input, stream, name)) = audio {
        args.extend([
            "-map".to_owned(),
            format!("{input}:{stream}"),
            "-c:a".to_owned(),
            "aac".to_owned(),
            "-b:a".to_owned(),
            job.options.audio_bitrate.bits().to_string(),
        ]);
        description.push_str(&format!(", audio from the {name}"));
    } else {
        description.push_str(", no audio");
    }
    if job.cut.is_some() {
        args.extend(["-t".to_owned(), clock::ffmpeg_seconds(duration)]);
        description.push_str(&format!(
            ", SMIL cut {} - {}",
            clock::vtt_timestamp(start),
            clock::vtt_timestamp(start + duration)
        ));
    }
    args.extend(["-movflags".to_owned(), "+faststart".to_owned()]);
    args.push(job.output.to_string_lossy().into_owned());
    Ok(CompositePlan {
        args,
        size,
        duration,
        description,
    })
}

/// Composites the mediapackage's tracks into `output/studio_base.mp4`, then encodes it.
pub async fn run(ctx: &TaskContext) -> PipelineResult {
    // Every parameter is checked before the first download.
    let options = StudioOptions::from_parameters(&ctx.parameters)?;
    EncodingOptions::from_parameters(&ctx.parameters)?;
    let xml = tokio::fs::read_to_string(&ctx.source)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                TaskError::BadInput("mediapackage: not UTF-8 text".to_owned())
            }
            _ => TaskError::io("reading", &ctx.source, &e),
        })?;
    let package = parse_mediapackage(&xml)?;
    let layout = match (options.layout, &package.layout) {
        (Some(layout), _) => layout,
        (None, Some(name)) if !name.trim().is_empty() => Layout::parse(name).ok_or_else(|| {
            TaskError::BadInput(format!(
                "mediapackage: presenter layout {name:?} is not one of mid, piph, pipb"
            ))
        })?,
        (None, _) => Layout::Mid,
    };
    let encoding_type = if options.force_cpu {
        EncodingType::Cpu
    } else {
        ctx.media.encoding_type
    };

    let mut tracks: [Option<Track>; 2] = [None, None];
    for (slot, (what, base, url)) in tracks.iter_mut().zip([
        (
            "the presenter track",
            "studio_presenter",
            &package.presenter,
        ),
        (
            "the presentation track",
            "studio_presentation",
            &package.presentation,
        ),
    ]) {
        if let Some(url) = url {
            let path = download(ctx, what, url, SourceKind::Media, base).await?;
            let info = probe::probe(ctx, what, &path).await?;
            *slot = Some(Track { path, info });
        }
    }
    let cut = match &package.cutting {
        Some(url) => {
            let path = download(
                ctx,
                "the SMIL cutting catalog",
                url,
                SourceKind::Mediapackage,
                "studio_cutting",
            )
            .await?;
            let smil = tokio::fs::read_to_string(&path).await.map_err(|e| {
                TaskError::BadInput(format!("SMIL cutting catalog: unreadable: {e}"))
            })?;
            parse_smil_cut(&smil)?
        }
        None => None,
    };
    ctx.process.check()?;

    tokio::fs::create_dir_all(&ctx.output_dir)
        .await
        .map_err(|e| TaskError::io("creating", &ctx.output_dir, &e))?;
    let base = ctx.output_dir.join(BASE_NAME);
    let [presenter, presentation] = &tracks;
    let plan = composite_plan(&CompositeJob {
        presenter: presenter.as_ref(),
        presentation: presentation.as_ref(),
        layout,
        cut,
        options: &options,
        encoding: encoding_type,
        output: &base,
    })?;
    let log = EncodingLog::new(ctx.output_dir.join("encoding.log"));
    ctx.progress.set(0.0);
    run_ffmpeg(
        ctx,
        &log,
        "studio",
        &plan.args,
        Some(ProgressSpan {
            from: 0.0,
            to: COMPOSITE_PROGRESS,
            duration: plan.duration,
        }),
    )
    .await?;
    ctx.process.check()?;

    // The encoding step sees the composite as its source; force_cpu holds for it too.
    let mut media: MediaConfig = (*ctx.media).clone();
    media.encoding_type = encoding_type;
    let encode_ctx = TaskContext {
        source: base.clone(),
        source_name: BASE_NAME.to_owned(),
        media: Arc::new(media),
        ..ctx.clone()
    };
    let encoded =
        encoding::encode(&encode_ctx, &base, BASE_STEM, (COMPOSITE_PROGRESS, 100.0)).await?;
    let size = plan
        .size
        .map_or_else(String::new, |(w, h)| format!("{w}x{h}, "));
    Ok(format!(
        "studio (layout {}): {} -> {BASE_NAME} ({size}{:.1} s)\n{encoded}",
        layout.as_str(),
        plan.description,
        plan.duration
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::testing;
    use crate::media::testkit;
    use serde_json::{json, Value};

    const PREFIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<mp:mediapackage xmlns:mp="http://mediapackage.opencastproject.org" id="a1" presenter="piph">
  <mp:media>
    <mp:track id="t1" type="presenter/source"><mp:mimetype>video/webm</mp:mimetype>
      <mp:url>http://media.example.org/presenter.webm</mp:url></mp:track>
    <mp:track id="t2" type="presentation/source"><mp:url>http://media.example.org/slides.webm</mp:url></mp:track>
    <mp:track id="t3" type="presenter/source"><mp:url>http://media.example.org/second.webm</mp:url></mp:track>
  </mp:media>
  <mp:metadata>
    <mp:catalog id="c0" type="dublincore/episode"><mp:url>http://media.example.org/dc.xml</mp:url></mp:catalog>
    <mp:catalog id="c1" type="smil/cutting"><mp:url>http://media.example.org/cut.smil</mp:url></mp:catalog>
  </mp:metadata>
</mp:mediapackage>"#;

    fn parameters(value: Value) -> Parameters {
        Parameters(value.as_object().expect("object").clone())
    }

    fn bad_input(result: Result<impl std::fmt::Debug, TaskError>) -> String {
        match result {
            Err(TaskError::BadInput(message)) => message,
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    #[test]
    fn mediapackage_prefixed_default_and_no_namespace() {
        let package = parse_mediapackage(PREFIXED).expect("valid");
        assert_eq!(
            package,
            Mediapackage {
                layout: Some("piph".to_owned()),
                presenter: Some("http://media.example.org/presenter.webm".to_owned()),
                presentation: Some("http://media.example.org/slides.webm".to_owned()),
                cutting: Some("http://media.example.org/cut.smil".to_owned()),
            }
        );
        let default_ns = r#"<mediapackage xmlns="http://mediapackage.opencastproject.org">
            <media><track type="presentation/source"><url> http://h/s.mp4 </url></track></media>
            </mediapackage>"#;
        let package = parse_mediapackage(default_ns).expect("valid");
        assert_eq!(package.presentation.as_deref(), Some("http://h/s.mp4"));
        assert_eq!(
            (package.presenter, package.layout, package.cutting),
            (None, None, None)
        );
        let no_ns = r#"<mediapackage presenter="pipb"><media><track type="presenter/source"><url>http://h/p.mp4</url></track></media></mediapackage>"#;
        let package = parse_mediapackage(no_ns).expect("valid");
        assert_eq!(package.presenter.as_deref(), Some("http://h/p.mp4"));
        assert_eq!(package.layout.as_deref(), Some("pipb"));
        // Elements of another namespace are not mediapackage tracks.
        let foreign = r#"<mediapackage xmlns:x="urn:other"><media><x:track type="presenter/source"><x:url>http://h/p.mp4</x:url></x:track></media></mediapackage>"#;
        assert!(bad_input(parse_mediapackage(foreign)).contains("no tracks at all"));
    }

    #[test]
    fn mediapackage_refusals_are_precise() {
        for (xml, expected) in [
            ("<mediapackage><media>", "mediapackage: not valid XML"),
            ("<mp:mediapackage><mp:media/></mp:mediapackage>", "not valid XML"),
            (
                r#"<manifest xmlns="http://mediapackage.opencastproject.org"/>"#,
                "the root element is <manifest>",
            ),
            (
                r#"<mediapackage xmlns="urn:other"/>"#,
                "(namespace urn:other), expected <mediapackage>",
            ),
            (
                r#"<mediapackage><media><track type="presenter/delivery"><url>http://h/a.mp4</url></track><track/></media></mediapackage>"#,
                "no presenter/source or presentation/source track (tracks found: presenter/delivery, (no type))",
            ),
            (
                r#"<mediapackage><media><track type="presentation/source"><url>  </url></track></media></mediapackage>"#,
                "the presentation/source track has no <url>",
            ),
            (
                r#"<mediapackage><media><track type="presenter/source"><url>http://h/a.mp4</url></track></media><metadata><catalog type="smil/cutting"/></metadata></mediapackage>"#,
                "the smil/cutting catalog has no <url>",
            ),
        ] {
            let message = bad_input(parse_mediapackage(xml));
            assert!(message.contains(expected), "{xml}: {message}");
        }
    }

    #[test]
    fn smil_cut_uses_the_first_video_clip() {
        let smil = r#"<smil xmlns="http://www.w3.org/ns/SMIL" version="3.0"><head/><body>
            <par><video src="presenter.mp4" clipBegin="1500ms" clipEnd="00:00:04.250"/>
                 <video src="slides.mp4" clipBegin="1500ms" clipEnd="00:00:04.250"/></par>
            <par><video clipBegin="10s" clipEnd="12s"/></par></body></smil>"#;
        assert_eq!(
            parse_smil_cut(smil).expect("valid"),
            Some(SmilCut {
                begin: 1.5,
                end: Some(4.25)
            })
        );
        assert_eq!(
            parse_smil_cut(r#"<smil><body><video clip-begin="2s"/></body></smil>"#).expect("valid"),
            Some(SmilCut {
                begin: 2.0,
                end: None
            })
        );
        assert_eq!(
            parse_smil_cut("<smil><body><video src='a'/></body></smil>").expect("valid"),
            None
        );
        assert_eq!(parse_smil_cut("<smil><body/></smil>").expect("valid"), None);
        for (xml, expected) in [
            (
                r#"<smil><video clipBegin="soon"/></smil>"#,
                "clipBegin \"soon\" is not a SMIL clock value",
            ),
            (
                r#"<smil><video clipBegin="5s" clipEnd="2s"/></smil>"#,
                "clipEnd (00:00:02.000) is not after clipBegin (00:00:05.000)",
            ),
            ("<smil>", "SMIL cutting catalog: not valid XML"),
        ] {
            let message = bad_input(parse_smil_cut(xml));
            assert!(message.contains(expected), "{xml}: {message}");
        }
    }

    #[test]
    fn studio_parameters() {
        let defaults = StudioOptions::from_parameters(&Parameters::default()).expect("defaults");
        assert_eq!(
            defaults,
            StudioOptions {
                layout: None,
                force_cpu: false,
                crf: 23,
                preset: "medium".to_owned(),
                audio_bitrate: Bitrate::from_kbps(128),
            }
        );
        let given = StudioOptions::from_parameters(&parameters(json!({
            "presenter": "PIPB", "force_cpu": "true", "studio_crf": 28, "studio_preset": "veryfast",
            "studio_audio_bitrate": "96k"
        })))
        .expect("valid");
        assert_eq!(
            (
                given.layout,
                given.force_cpu,
                given.crf,
                given.preset.as_str(),
                given.audio_bitrate.bits()
            ),
            (Some(Layout::Pipb), true, 28, "veryfast", 96_000)
        );
        for (value, expected) in [
            (
                json!({"presenter": "side"}),
                "parameter presenter: layout \"side\" is not one of mid, piph, pipb",
            ),
            (
                json!({"studio_crf": "60"}),
                "parameter studio_crf: \"60\" is not an integer from 0 to 51",
            ),
            (json!({"studio_crf": "-1"}), "parameter studio_crf"),
            (
                json!({"studio_preset": "turbo"}),
                "parameter studio_preset: \"turbo\" is not one of ultrafast",
            ),
            (
                json!({"studio_audio_bitrate": "loud"}),
                "parameter studio_audio_bitrate",
            ),
        ] {
            let message = bad_input(StudioOptions::from_parameters(&parameters(value.clone())));
            assert!(message.contains(expected), "{value}: {message}");
        }
    }

    fn track(name: &str, width: u32, height: u32, audio: bool, duration: f64) -> Track {
        Track {
            path: PathBuf::from(format!("/w/{name}.mp4")),
            info: MediaInfo {
                duration,
                format_name: "mp4".to_owned(),
                size: None,
                bit_rate: None,
                video: (width > 0).then(|| testing::video(width, height)),
                audio: audio.then(testing::audio),
            },
        }
    }

    fn plan(
        presenter: Option<&Track>,
        presentation: Option<&Track>,
        layout: Layout,
        cut: Option<SmilCut>,
        encoding: EncodingType,
    ) -> Result<CompositePlan, TaskError> {
        let options = StudioOptions::from_parameters(&Parameters::default()).expect("defaults");
        composite_plan(&CompositeJob {
            presenter,
            presentation,
            layout,
            cut,
            options: &options,
            encoding,
            output: Path::new("/w/output/studio_base.mp4"),
        })
    }

    use crate::media::testkit::flag_values as values;

    #[test]
    fn composite_layouts() {
        let presenter = track("presenter", 320, 180, true, 3.0);
        let slides = track("slides", 320, 240, false, 3.2);
        let mid = plan(
            Some(&presenter),
            Some(&slides),
            Layout::Mid,
            None,
            EncodingType::Cpu,
        )
        .expect("mid");
        assert_eq!(mid.size, Some((426 + 320, 240)));
        assert_eq!(
            values(&mid.args, "-filter_complex"),
            ["[0:0]fps=25,scale=426:240,setsar=1[left];[1:0]fps=25,scale=320:240,setsar=1[right];[left][right]hstack=inputs=2[v]"]
        );
        assert_eq!(
            values(&mid.args, "-i"),
            ["/w/presenter.mp4", "/w/slides.mp4"]
        );
        assert_eq!(values(&mid.args, "-map"), ["[v]", "0:1"]);
        assert_eq!(values(&mid.args, "-c:v"), ["libx264"]);
        assert_eq!(values(&mid.args, "-preset"), ["medium"]);
        assert_eq!(values(&mid.args, "-crf"), ["23"]);
        assert_eq!(values(&mid.args, "-b:a"), ["128000"]);
        assert_eq!(mid.duration, 3.2);
        assert!(
            mid.description.ends_with("audio from the presenter"),
            "{}",
            mid.description
        );

        let piph = plan(
            Some(&presenter),
            Some(&slides),
            Layout::Piph,
            None,
            EncodingType::Cpu,
        )
        .expect("piph");
        assert_eq!(piph.size, Some((320, 240)));
        assert_eq!(
            values(&piph.args, "-filter_complex"),
            ["[1:0]fps=25,scale=320:240,setsar=1[base];[0:0]fps=25,scale=106:60,setsar=1[pip];[base][pip]overlay=x=208:y=6:eof_action=pass[v]"]
        );
        let pipb = plan(
            Some(&presenter),
            Some(&slides),
            Layout::Pipb,
            None,
            EncodingType::Cpu,
        )
        .expect("pipb");
        assert!(values(&pipb.args, "-filter_complex")[0]
            .ends_with("overlay=x=208:y=174:eof_action=pass[v]"));

        // One video track: alone, whatever the layout; audio from the other track.
        let voice = track("voice", 0, 0, true, 3.0);
        let alone = plan(
            Some(&voice),
            Some(&slides),
            Layout::Piph,
            None,
            EncodingType::Cpu,
        )
        .expect("alone");
        assert_eq!(alone.size, Some((320, 240)));
        assert_eq!(
            values(&alone.args, "-filter_complex"),
            ["[1:0]fps=25,scale=320:240,setsar=1[v]"]
        );
        assert_eq!(values(&alone.args, "-map"), ["[v]", "0:1"]);
        let silent =
            plan(None, Some(&slides), Layout::Mid, None, EncodingType::Cpu).expect("silent");
        assert_eq!(values(&silent.args, "-map"), ["[v]"]);
        assert_eq!(silent.description, "presentation track only, no audio");
        // Audio falls back to the presentation when the presenter has none.
        let mute_presenter = track("presenter", 320, 180, false, 3.0);
        let talking_slides = track("slides", 320, 240, true, 3.0);
        let fallback = plan(
            Some(&mute_presenter),
            Some(&talking_slides),
            Layout::Mid,
            None,
            EncodingType::Cpu,
        )
        .expect("fallback");
        assert_eq!(values(&fallback.args, "-map"), ["[v]", "1:1"]);
        // Audio only.
        let audio = plan(Some(&voice), None, Layout::Mid, None, EncodingType::Cpu).expect("audio");
        assert_eq!((audio.size, values(&audio.args, "-c:v").len()), (None, 0));
        let nothing = track("nothing", 0, 0, false, 3.0);
        assert!(bad_input(plan(
            Some(&nothing),
            None,
            Layout::Mid,
            None,
            EncodingType::Cpu
        ))
        .contains("no video and no audio"));
    }

    #[test]
    fn composite_cut_and_gpu() {
        let presenter = track("presenter", 1920, 1080, true, 60.0);
        let slides = track("slides", 1280, 720, false, 61.0);
        let cut = SmilCut {
            begin: 1.5,
            end: Some(4.25),
        };
        let gpu = plan(
            Some(&presenter),
            Some(&slides),
            Layout::Mid,
            Some(cut),
            EncodingType::Gpu,
        )
        .expect("gpu");
        assert_eq!(values(&gpu.args, "-ss"), ["1.500", "1.500"]);
        let first_ss = gpu.args.iter().position(|a| a == "-ss").expect("-ss");
        assert_eq!(gpu.args[first_ss + 2], "-i");
        assert_eq!(values(&gpu.args, "-t"), ["2.750"]);
        assert!((gpu.duration - 2.75).abs() < 1e-9);
        assert_eq!(values(&gpu.args, "-c:v"), ["h264_nvenc"]);
        assert_eq!(values(&gpu.args, "-cq"), ["23"]);
        assert_eq!(values(&gpu.args, "-preset"), ["p4"]);
        // mid: both at 720 (the cap), side by side.
        assert_eq!(gpu.size, Some((2560, 720)));
        // A cut to the end, and a cut past the end.
        let open = plan(
            Some(&presenter),
            None,
            Layout::Mid,
            Some(SmilCut {
                begin: 50.0,
                end: None,
            }),
            EncodingType::Cpu,
        )
        .expect("open");
        assert!((open.duration - 10.0).abs() < 1e-9);
        assert_eq!(open.size, Some((1920, 1080)));
        let late = plan(
            Some(&presenter),
            Some(&slides),
            Layout::Mid,
            Some(SmilCut {
                begin: 90.0,
                end: None,
            }),
            EncodingType::Cpu,
        );
        assert!(bad_input(late)
            .contains("clipBegin 00:01:30.000 is after the end of the recording (00:01:01.000)"));
    }

    /// A mediapackage whose tracks (and SMIL) are served by the loopback stand-in for the
    /// Opencast media host.
    async fn studio_task(
        layout_attribute: &str,
        smil: Option<&str>,
        params: Value,
    ) -> (testkit::TestTask, tempfile::TempDir) {
        let task = testkit::task("mediapackage.xml", params, false);
        let media = tempfile::tempdir().expect("media dir");
        testkit::clip(&media.path().join("presenter.mp4"), 320, 180, 3, true);
        testkit::clip(&media.path().join("slides.mp4"), 320, 240, 3, false);
        let base = testkit::serve_dir(media.path().to_owned()).await;
        let catalog = match smil {
            Some(smil) => {
                std::fs::write(media.path().join("cut.smil"), smil).expect("smil");
                format!(
                    r#"<metadata><catalog type="smil/cutting"><url>{base}/cut.smil</url></catalog></metadata>"#
                )
            }
            None => String::new(),
        };
        let xml = format!(
            r#"<?xml version="1.0"?>
<mediapackage xmlns="http://mediapackage.opencastproject.org" {layout_attribute}>
  <media>
    <track type="presenter/source"><url>{base}/presenter.mp4</url></track>
    <track type="presentation/source"><url>{base}/slides.mp4</url></track>
  </media>{catalog}
</mediapackage>"#
        );
        std::fs::write(&task.ctx.source, xml).expect("mediapackage");
        (task, media)
    }

    #[tokio::test]
    async fn studio_mid_with_a_smil_cut() {
        let smil = r#"<smil xmlns="http://www.w3.org/ns/SMIL"><body><par><video clipBegin="500ms" clipEnd="00:00:02.500"/></par></body></smil>"#;
        let (task, _media) =
            studio_task("", Some(smil), json!({"studio_preset": "veryfast"})).await;
        let ctx = &task.ctx;
        let summary = run(ctx).await.expect("studio");
        assert!(summary.starts_with("studio (layout mid): presenter + presentation side by side, audio from the presenter, SMIL cut 00:00:00.500 - 00:00:02.500"), "{summary}");
        let base = testkit::ffprobe(&ctx.output_dir.join(BASE_NAME));
        let video = base.video.expect("video");
        assert_eq!((video.width, video.height), (746, 240));
        assert!(base.audio.is_some());
        assert!((base.duration - 2.0).abs() < 0.15, "{}", base.duration);
        // Then encoded: 240 lines is below 360, so one rendition at 240.
        for name in [
            "240p_studio_base.m3u8",
            "240p_studio_base.ts",
            "240p_studio_base.mp4",
            "audio_192k_studio_base.mp3",
            "studio_base_0.png",
            "overview.vtt",
            "info_video.json",
        ] {
            assert!(ctx.output_dir.join(name).is_file(), "{name}");
        }
        assert!(!ctx.output_dir.join("360p_studio_base.mp4").exists());
        assert_eq!(
            testkit::dimensions(&ctx.output_dir.join("240p_studio_base.mp4")),
            (746, 240)
        );
        assert_eq!(ctx.progress.get(), 100.0);
        let log = std::fs::read_to_string(ctx.output_dir.join("encoding.log")).expect("log");
        assert!(
            log.contains("[studio] $ ffmpeg") && log.contains("[encode] $ ffmpeg"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn studio_piph_from_the_mediapackage() {
        let (task, _media) = studio_task(
            r#"presenter="piph""#,
            None,
            json!({"studio_preset": "ultrafast"}),
        )
        .await;
        let summary = run(&task.ctx).await.expect("studio");
        assert!(
            summary.starts_with("studio (layout piph): presentation with the presenter top right"),
            "{summary}"
        );
        let base = task.ctx.output_dir.join(BASE_NAME);
        assert_eq!(testkit::dimensions(&base), (320, 240));
        assert!((testkit::ffprobe(&base).duration - 3.0).abs() < 0.15);
    }

    #[tokio::test]
    async fn studio_pipb_from_the_parameter() {
        let (task, _media) = studio_task(
            r#"presenter="piph""#,
            None,
            json!({"presenter": "pipb", "studio_preset": "ultrafast"}),
        )
        .await;
        let summary = run(&task.ctx).await.expect("studio");
        assert!(
            summary
                .starts_with("studio (layout pipb): presentation with the presenter bottom right"),
            "{summary}"
        );
        assert_eq!(
            testkit::dimensions(&task.ctx.output_dir.join(BASE_NAME)),
            (320, 240)
        );
    }

    #[tokio::test]
    async fn studio_refuses_before_downloading() {
        let task = testkit::task("mediapackage.xml", Value::Null, false);
        std::fs::write(&task.ctx.source, r#"<mediapackage presenter="sideways"><media><track type="presenter/source"><url>http://127.0.0.1:9/p.mp4</url></track></media></mediapackage>"#).expect("write");
        let message = bad_input(run(&task.ctx).await);
        assert_eq!(
            message,
            "mediapackage: presenter layout \"sideways\" is not one of mid, piph, pipb"
        );
        let mut task = task;
        task.ctx.parameters = parameters(json!({"rendition": "{\"360\": 5}"}));
        assert!(bad_input(run(&task.ctx).await).starts_with("parameter rendition: "));
        assert!(!task.ctx.workspace.join("info_script.log").exists());
    }
}
