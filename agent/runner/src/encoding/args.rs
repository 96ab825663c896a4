//! What the ffmpeg commands of the pipeline share: presets, intermediate codecs, path
//! arguments and the output file names.

use std::path::{Path, PathBuf};

use crate::pipeline::EncodingType;

/// x264 preset of the ladder. The rungs are bitrate-capped, so a slower preset buys a little
/// quality per bit at a large CPU cost; `veryfast` keeps a 2-core worker above real time on
/// 720p (see `wiki/benchmarks/encode.md`).
pub(super) const X264_PRESET: &str = "veryfast";

/// NVENC preset (p1 fastest .. p7 best); p4 is NVIDIA's balanced default.
pub(super) const NVENC_PRESET: &str = "p4";

/// Bit rate of the `audio_192k_*` files.
pub(super) const AUDIO_FILE_BITRATE: &str = "192k";

pub(super) fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

pub(super) fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Video and audio codecs of intermediates (cut, dressed): near-lossless H.264 and FLAC in
/// Matroska, so the ladder encode starts from (almost) the source quality. Stream copy cannot
/// be used for the cut: it could only start on a keyframe.
pub(super) fn intermediate_codecs(encoding: EncodingType) -> Vec<String> {
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
