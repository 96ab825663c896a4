//! Bearer tokens of admins, read-only viewers (`--viewer-token-file`) and of the shared worker
//! mode, read from files: one per line, `token` or `name=token` (blank lines and `#` comments
//! ignored). Compared in constant time. Enrolled workers' own credentials are in
//! [`crate::state::enrolment`].

use std::path::Path;

use subtle::ConstantTimeEq;

use crate::StartupError;

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An admin token, by name (written to the audit trail).
    Admin(String),
    /// A shared worker token (`--worker-token-file`), by name: trusted for any worker id that
    /// is not enrolled.
    Worker(String),
    /// An enrolled worker's own credential, by worker id: speaks for that worker only.
    Enrolled(String),
    /// A viewer token (`--viewer-token-file`), by name: may read the admin API, not act.
    Viewer(String),
}

/// The accepted tokens.
#[derive(Clone)]
pub struct Tokens {
    admin: Vec<(String, Vec<u8>)>,
    worker: Vec<(String, Vec<u8>)>,
    viewer: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field(
                "admin",
                &self.admin.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "worker",
                &self.worker.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "viewer",
                &self.viewer.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Shortest token accepted: anything shorter is guessable or a placeholder.
pub const MIN_TOKEN_LEN: usize = 16;

impl Tokens {
    /// Reads the token files, refusing placeholders. Without a worker token file there is no
    /// shared worker token: only enrolled workers are served.
    pub fn load(admin_file: &Path, worker_file: Option<&Path>) -> Result<Self, StartupError> {
        let admin = read_token_file(admin_file, "admin")?;
        let worker = match worker_file {
            Some(file) => read_token_file(file, "worker")?,
            None => Vec::new(),
        };
        for (name, token) in &admin {
            if worker.iter().any(|(_, w)| w == token) {
                return Err(StartupError::Config(format!(
                    "admin token {name:?} is also a worker token; use distinct tokens"
                )));
            }
        }
        Ok(Tokens {
            admin,
            worker,
            viewer: Vec::new(),
        })
    }

    /// Adds the read-only tokens of `--viewer-token-file` (same format); each must differ from
    /// every admin and worker token.
    pub fn with_viewers(mut self, viewer_file: &Path) -> Result<Self, StartupError> {
        let viewer = read_token_file(viewer_file, "viewer")?;
        for (name, token) in &viewer {
            if self
                .admin
                .iter()
                .chain(&self.worker)
                .any(|(_, other)| other == token)
            {
                return Err(StartupError::Config(format!(
                    "viewer token {name:?} is also an admin or worker token; use distinct tokens"
                )));
            }
        }
        self.viewer = viewer;
        Ok(self)
    }

    /// Whether a shared worker token is configured (`--worker-token-file`).
    pub fn shared_worker_mode(&self) -> bool {
        !self.worker.is_empty()
    }

    /// Identifies the caller from an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Caller> {
        let token = authorization?.strip_prefix("Bearer ")?.trim().as_bytes();
        // Compare against every token so timing does not reveal which list (or entry) matched.
        let mut found = None;
        for (name, candidate) in &self.admin {
            if bool::from(candidate.as_slice().ct_eq(token)) {
                found = Some(Caller::Admin(name.clone()));
            }
        }
        for (name, candidate) in &self.worker {
            if bool::from(candidate.as_slice().ct_eq(token)) {
                found = Some(Caller::Worker(name.clone()));
            }
        }
        for (name, candidate) in &self.viewer {
            if bool::from(candidate.as_slice().ct_eq(token)) {
                found = Some(Caller::Viewer(name.clone()));
            }
        }
        found
    }
}

fn read_token_file(path: &Path, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StartupError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StartupError::Config(format!(
            "cannot read {kind} token file {}: {e}",
            path.display()
        ))
    })?;
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, token) = match line.split_once('=') {
            Some((name, token)) => (name.trim().to_owned(), token.trim()),
            None => (format!("{kind}-{}", index + 1), line),
        };
        if let Some(problem) = placeholder_problem(token) {
            return Err(StartupError::Config(format!(
                "{kind} token file {} line {}: {problem}; generate one with: openssl rand -hex 32",
                path.display(),
                index + 1
            )));
        }
        tokens.push((name, token.as_bytes().to_vec()));
    }
    if tokens.is_empty() {
        return Err(StartupError::Config(format!(
            "{kind} token file {} holds no token",
            path.display()
        )));
    }
    Ok(tokens)
}

/// Why a token is refused, if it is a placeholder or too weak.
pub fn placeholder_problem(token: &str) -> Option<String> {
    if let Some(word) = config_syntax::placeholder_word(token) {
        return Some(format!(
            "the token looks like a placeholder (contains {word:?})"
        ));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Some(format!(
            "the token is shorter than {MIN_TOKEN_LEN} characters"
        ));
    }
    if token.chars().any(char::is_whitespace) {
        return Some("the token contains white space".to_owned());
    }
    None
}
