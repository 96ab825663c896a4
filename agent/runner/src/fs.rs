//! Durable file writes: the task status, result manifests and pending completions here, and
//! the agent's own state files (the agent's state module calls these, so there is one
//! implementation).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::WriteError;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsynced, renamed
/// over `path`, then the directory fsynced. Readers see the old content or the new, never a
/// part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let failed = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist(path).map_err(|e| failed(e.error))?;
    sync_dir(dir).map_err(failed)
}

/// fsyncs a directory, so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_whole_file_and_names_the_path_when_it_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("status.json");
        write_atomic(&file, b"first, longer content").expect("first write");
        write_atomic(&file, b"second").expect("second write");
        assert_eq!(std::fs::read(&file).expect("read"), b"second");
        let missing = dir.path().join("no-such-dir/status.json");
        let error = write_atomic(&missing, b"x").expect_err("no parent directory");
        assert_eq!(error.path, missing);
        assert!(error
            .to_string()
            .starts_with(&missing.display().to_string()));
    }
}
