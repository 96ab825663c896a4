//! Refusing a configuration the agent cannot run with: once, before anything starts, with one
//! line naming the variable, and exit code 78 ([`EXIT_REFUSED`], `EX_CONFIG`), which the
//! shipped systemd unit lists in `RestartPreventExitStatus=` and the supervisor never restarts.
//! A restart cannot mend a configuration, so a restart loop would only hide the message.
//!
//! Two stages: [`usage_error_line`] renders what clap refused (a malformed boolean or duration,
//! a missing variable) as that one line; [`check`] then refuses what parses but cannot work (a
//! placeholder token, an unusable `RUNNER_TASK_TYPES`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::config::AgentConfig;
use crate::handover::EXIT_REFUSED;

/// The exit code of a refused configuration (`EX_CONFIG`, the same as every refusal to run).
pub const EXIT_CONFIG: i32 = EXIT_REFUSED;

/// A configuration `worker-agent run` refuses to start with. Each message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The ESUP runner layer's settings (`RUNNER_*`, `MANAGER_URL`).
    #[error(transparent)]
    Runner(#[from] esup_runner::config::ConfigError),
    /// No worker token at all.
    #[error("neither WORKER_ENROLL_TOKEN_FILE nor WORKER_TOKEN_FILE (or WORKER_TOKEN) is set: give a join token from `worker-release enroll-token` (or the shared worker token)")]
    WorkerTokenMissing,
    /// A join token and a shared worker token: which identity is meant?
    #[error("WORKER_ENROLL_TOKEN_FILE and WORKER_TOKEN_FILE (or WORKER_TOKEN) are both set: an enrolled worker uses its own credential, not the shared token; keep only WORKER_ENROLL_TOKEN_FILE")]
    SharedTokenAndEnrolment,
    /// `update check`/`apply` before `run` enrolled the worker.
    #[error("this worker is not enrolled yet ({path} does not exist): start `worker-agent run` once to enrol it with WORKER_ENROLL_TOKEN_FILE", path = path.display())]
    NotEnrolled {
        /// Where the credential would be.
        path: PathBuf,
    },
    /// A token on the command line or in the environment and a token file: which one is meant?
    #[error("WORKER_TOKEN and WORKER_TOKEN_FILE are both set: keep only WORKER_TOKEN_FILE")]
    WorkerTokenTwice,
    /// The token file is readable by group or others.
    #[error("{variable} {path} has mode {mode:o}: group or others can read the token; refusing to use it (run: chmod 600 {path}, or use systemd LoadCredential=)", path = path.display())]
    TokenFilePermissions {
        /// `WORKER_TOKEN_FILE`, or the systemd credential.
        variable: &'static str,
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The token file cannot be read, or holds no token.
    #[error("{variable} {path}: {problem}", path = path.display())]
    TokenFile {
        /// `WORKER_TOKEN_FILE`, or the systemd credential.
        variable: &'static str,
        /// The token file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The worker token is copied from an example file.
    #[error("WORKER_TOKEN is a placeholder (it contains `{word}`): set the worker token the update server issued")]
    WorkerTokenPlaceholder {
        /// The placeholder word found (never the token itself: it is a secret).
        word: &'static str,
    },
}

/// The systemd credential the shipped unit loads the worker token into
/// (`LoadCredential=worker-token:/etc/worker-agent/worker.token`).
pub const TOKEN_CREDENTIAL: &str = "worker-token";

/// The systemd credential a join token may be loaded into
/// (`LoadCredential=worker-enroll-token:/etc/worker-agent/join.token`).
pub const ENROLL_TOKEN_CREDENTIAL: &str = "worker-enroll-token";

/// Makes `config` ready for a command that talks to the update server: the worker token read
/// from `WORKER_TOKEN_FILE` (or the systemd credential) when `WORKER_TOKEN` is not given, then,
/// for `run`, [`check`].
pub fn prepare(config: &mut AgentConfig, run: bool) -> Result<(), ConfigError> {
    resolve_token(config, run)?;
    if run {
        check(config)?;
    }
    Ok(())
}

/// With enrolment (`WORKER_ENROLL_TOKEN_FILE`, or the systemd credential
/// `worker-enroll-token`): the stored credential (`STATE_DIR/worker.credential`), else the join
/// token to enrol with (`run` only). Without: `--token`/`WORKER_TOKEN`, else
/// `--token-file`/`WORKER_TOKEN_FILE`, else `$CREDENTIALS_DIRECTORY/worker-token` when it exists.
fn resolve_token(config: &mut AgentConfig, run: bool) -> Result<(), ConfigError> {
    let given = !config.token.trim().is_empty();
    let join_file = match &config.enroll_token_file {
        Some(_) if given || config.token_file.is_some() => {
            return Err(ConfigError::SharedTokenAndEnrolment)
        }
        Some(path) => Some(("WORKER_ENROLL_TOKEN_FILE", path.clone())),
        None if given || config.token_file.is_some() => None,
        None => std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| Path::new(&dir).join(ENROLL_TOKEN_CREDENTIAL))
            .filter(|path| path.exists())
            .map(|path| ("the systemd credential worker-enroll-token", path)),
    };
    if let Some((variable, join_file)) = join_file {
        let credential = crate::enrol::credential_path(&config.state_dir);
        if credential.exists() {
            // Enrolled already: the join token (maybe deleted since) is not read again.
            config.token = read_token_file("the enrolled credential", &credential)?;
        } else if run {
            config.enrol_with = Some(read_token_file(variable, &join_file)?);
        } else {
            return Err(ConfigError::NotEnrolled { path: credential });
        }
        return Ok(());
    }
    let file = match (&config.token_file, given) {
        (Some(_), true) => return Err(ConfigError::WorkerTokenTwice),
        (Some(path), false) => Some(("WORKER_TOKEN_FILE", path.clone())),
        (None, true) => None,
        (None, false) => std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| Path::new(&dir).join(TOKEN_CREDENTIAL))
            .filter(|path| path.exists())
            .map(|path| ("the systemd credential", path)),
    };
    if let Some((variable, path)) = file {
        config.token = read_token_file(variable, &path)?;
    }
    Ok(())
}

/// Reads a token file after the one permission check every secret file passes.
fn read_token_file(variable: &'static str, path: &Path) -> Result<String, ConfigError> {
    let problem = |problem: String| ConfigError::TokenFile {
        variable,
        path: path.to_owned(),
        problem,
    };
    manifests::check_secret_file(path).map_err(|error| match error {
        manifests::Error::KeyPermissions { path, mode } => ConfigError::TokenFilePermissions {
            variable,
            path,
            mode,
        },
        other => problem(other.to_string()),
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(problem("must hold one token, on one line".to_owned()));
    }
    Ok(token.to_owned())
}

/// Checks what parses but cannot work, before the supervisor starts any worker.
pub fn check(config: &AgentConfig) -> Result<(), ConfigError> {
    let token = config.token.trim();
    if token.is_empty() && config.enrol_with.is_none() {
        return Err(ConfigError::WorkerTokenMissing);
    }
    if let Some(word) = config_syntax::placeholder_word(token) {
        return Err(ConfigError::WorkerTokenPlaceholder { word });
    }
    // The task-type list is registered with the update server even without a Manager.
    config.runner.instances()?;
    if config.runner.manager_base().is_some() {
        config.runner.validate()?;
    }
    Ok(())
}

/// Prints a refused configuration as its one line and returns [`EXIT_CONFIG`].
pub fn refuse(message: &str) -> i32 {
    eprintln!("worker-agent: configuration error: {message}");
    EXIT_CONFIG
}

/// The one line for what clap refused, naming the variable (`AUTO_UPDATE: ...`) when the value
/// came from the environment, else the flag; `None` for `--help` and `--version`, which are no
/// errors.
pub fn usage_error_line(error: &clap::Error, command: &clap::Command) -> Option<String> {
    let arg_names = |context: Option<&ContextValue>| -> Vec<String> {
        match context {
            Some(ContextValue::String(one)) => vec![one.clone()],
            Some(ContextValue::Strings(many)) => many.clone(),
            _ => Vec::new(),
        }
    };
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => None,
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = arg_names(error.get(ContextKind::InvalidArg))
                .pop()
                .unwrap_or_default();
            let value = match error.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(value)) => value.clone(),
                _ => String::new(),
            };
            let reason = std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_else(|| format!("`{value}` is not a valid value"));
            Some(format!("{}: {reason}", source_name(command, &arg, &value)))
        }
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = arg_names(error.get(ContextKind::InvalidArg))
                .iter()
                .map(|arg| match env_of(command, arg) {
                    Some(env) => format!("{env} ({})", long_of(arg)),
                    None => long_of(arg).to_owned(),
                })
                .collect();
            Some(format!("not set: {}", missing.join(", ")))
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            Some(first.trim_start_matches("error: ").to_owned())
        }
    }
}

/// `--flag` of clap's `--flag <VALUE>`.
fn long_of(arg: &str) -> &str {
    arg.split_whitespace().next().unwrap_or(arg)
}

/// The variable behind `arg` when the environment holds the refused value, else the flag.
fn source_name(command: &clap::Command, arg: &str, value: &str) -> String {
    match env_of(command, arg) {
        Some(env) if std::env::var_os(&env).as_deref() == Some(OsStr::new(value)) => env,
        _ => long_of(arg).to_owned(),
    }
}

/// The environment variable of the flag `arg` (`--probation-secs <..>`), in any subcommand.
fn env_of(command: &clap::Command, arg: &str) -> Option<String> {
    let long = long_of(arg).strip_prefix("--")?;
    let own = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(clap::Arg::get_env)
        .map(|env| env.to_string_lossy().into_owned());
    own.or_else(|| command.get_subcommands().find_map(|sub| env_of(sub, arg)))
}
