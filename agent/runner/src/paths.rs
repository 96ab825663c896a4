//! Names that come from the Manager (task ids, result paths, source file names) and the files a
//! task publishes. Nothing a task writes ever lands outside `STORAGE_DIR/<task_id>`.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

/// Whether `id` is a valid task id (`^[A-Za-z0-9_-]+$`, at most 128 characters).
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `part` is a valid path part of `/task/result/{id}/file/{path...}`
/// (`^[A-Za-z0-9._ -]+$`, and not `.` or `..`).
pub fn valid_path_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.len() <= 255
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b' ' | b'-'))
}

/// `output_dir/<parts>` for a requested result path, or `None` when any part is invalid.
pub fn result_file(output_dir: &Path, requested: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = requested.split('/').collect();
    if parts.is_empty() || !parts.iter().all(|p| valid_path_part(p)) {
        return None;
    }
    let mut path = output_dir.to_owned();
    for part in parts {
        path.push(part);
    }
    Some(path)
}

/// The output `stem` of a source file name: without its extension, accents transliterated to
/// ASCII, spaces to `_`, and anything outside `[A-Za-z0-9._-]` dropped, so that every output name
/// is a valid result path part. Never empty (`source`).
pub fn output_stem(source_name: &str) -> String {
    let base = Path::new(source_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ascii = deunicode::deunicode(&base);
    let stem: String = ascii
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('_'),
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => Some(c),
            _ => None,
        })
        .collect();
    let stem = stem.trim_matches('.').to_owned();
    if stem.is_empty() {
        "source".to_owned()
    } else {
        stem
    }
}

/// `manifest.json` of a successful task.
#[derive(Debug, Clone, Serialize)]
pub struct ResultManifest {
    /// The task.
    pub task_id: String,
    /// Every file under `output/`, relative, `/`-separated, sorted.
    pub files: Vec<String>,
}

/// Every regular file under `output_dir`, relative and `/`-separated, sorted. Symbolic links are
/// not followed (a tool must not be able to publish a file from outside the workspace).
pub fn list_outputs(output_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![output_dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let relative = entry
                    .path()
                    .strip_prefix(output_dir)
                    .map(|p| {
                        p.components()
                            .filter_map(|c| match c {
                                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default();
                if !relative.is_empty() {
                    files.push(relative);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_and_path_parts() {
        for good in ["abc", "A-b_9", "0f8e2c1a-0000-4000-8000-000000000000"] {
            assert!(valid_task_id(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            "a b",
            "a.b",
            "%2e%2e",
            "a\0b",
            &"x".repeat(129),
        ] {
            assert!(!valid_task_id(bad), "{bad:?}");
        }
        for good in ["360p_x.mp4", "sub", "a b.txt", ".hidden"] {
            assert!(valid_path_part(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "é.mp4", "a\nb"] {
            assert!(!valid_path_part(bad), "{bad:?}");
        }
        let out = Path::new("/s/t/output");
        assert_eq!(
            result_file(out, "sub/dir.txt"),
            Some(PathBuf::from("/s/t/output/sub/dir.txt"))
        );
        for bad in ["../manifest.json", "sub/../../x", "/etc/passwd", "a//b", ""] {
            assert_eq!(result_file(out, bad), None, "{bad}");
        }
    }

    #[test]
    fn stems_are_ascii_and_safe() {
        assert_eq!(output_stem("Ma vidéo d'été.mp4"), "Ma_video_dete");
        assert_eq!(output_stem("clip.final.mkv"), "clip.final");
        assert_eq!(output_stem("日本.mp4"), "Ri_Ben");
        assert_eq!(output_stem("(!).mp4"), "source");
        assert_eq!(output_stem("../../x.mp4"), "x");
        assert!(valid_path_part(&output_stem("Été à Paris (2024).mov")));
    }
}
