//! The Whisper model registry: which model names the `transcription` task knows, where each one
//! comes from and the sha256 of its files. The registry is `agent/runner/whisper/models.json`,
//! embedded here and written beside `transcribe.py` in each workspace, so the agent, the script,
//! `scripts/setup-whisper.sh` and `scripts/provision-whisper-model.sh` read the same table.
//!
//! A model is either *packaged* (inside the venv, from the pinned wheels: `tiny.en`, `base`) or
//! *provisioned*: a directory `WHISPER_MODELS_DIR/<name>/` that the operator made with the
//! provisioning script, which checks it by sha256 and leaves a manifest. A model that is neither
//! fails the task with a message naming the model and the provisioning command; there is no
//! fall-back to another model. The script checks the files by sha256 again before loading.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;

use crate::error::TaskError;

/// The registry, as the script reads it too.
pub const REGISTRY_JSON: &str = include_str!("../../whisper/models.json");

/// The command that provisions a model into `WHISPER_MODELS_DIR`.
pub const PROVISION_SCRIPT: &str = "scripts/provision-whisper-model.sh";

/// What the provisioning script writes in a model directory (the files it checked).
pub const MANIFEST: &str = "worker-agent-model.json";

/// The packaged multilingual model: the default, and what a non-English language needs.
pub const MULTILINGUAL_PACKAGED: &str = "base";

#[derive(Debug, Deserialize)]
struct Registry {
    models: Vec<KnownModel>,
}

/// One model of the registry.
#[derive(Debug, Clone, Deserialize)]
pub struct KnownModel {
    /// The name tasks give (`model`) and the directory name under `WHISPER_MODELS_DIR`.
    pub name: String,
    /// Other names for it (`large-v3` for `large`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// False for the English-only models (`*.en`).
    pub multilingual: bool,
    /// Present for a model the venv ships (how setup finds it).
    #[serde(default)]
    pub packaged: Option<serde_json::Value>,
    /// Where the files come from (repository@revision).
    pub origin: String,
    /// File name to its size and sha256.
    pub files: BTreeMap<String, FileHash>,
}

/// The expected size (when known) and sha256 of one file of a model.
#[derive(Debug, Clone, Deserialize)]
pub struct FileHash {
    #[serde(default)]
    pub size: Option<u64>,
    pub sha256: String,
}

impl KnownModel {
    pub fn is_packaged(&self) -> bool {
        self.packaged.is_some()
    }

    /// The sha256 of `model.bin`, the weights.
    pub fn weights_sha256(&self) -> &str {
        self.files
            .get("model.bin")
            .map(|f| f.sha256.as_str())
            .unwrap_or_default()
    }
}

static REGISTRY: LazyLock<Vec<KnownModel>> = LazyLock::new(|| {
    // The file is part of this binary; the unit tests check that it parses.
    serde_json::from_str::<Registry>(REGISTRY_JSON)
        .map(|r| r.models)
        .unwrap_or_default()
});

/// Every known model, in the registry's order.
pub fn known() -> &'static [KnownModel] {
    &REGISTRY
}

/// The known model called `name` (or one of its aliases), any case.
pub fn lookup(name: &str) -> Option<&'static KnownModel> {
    let name = name.to_ascii_lowercase();
    known()
        .iter()
        .find(|m| m.name == name || m.aliases.contains(&name))
}

/// A model name as a task or `WHISPER_MODEL` gives it, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    /// The registry's name for a known model, else the name given.
    pub name: String,
    /// Its directory under `WHISPER_MODELS_DIR`; `None` for a packaged model.
    pub dir: Option<PathBuf>,
    /// From the registry; `None` for a model it does not know (the script tells).
    pub multilingual: Option<bool>,
}

/// A model name is one directory name: it must not reach outside `WHISPER_MODELS_DIR`.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn packaged_names() -> String {
    known()
        .iter()
        .filter(|m| m.is_packaged())
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to provision `name`: the command, and for a known model where its files come from and
/// the sha256 its `model.bin` must have.
pub fn provisioning_hint(name: &str, models_dir: Option<&Path>) -> String {
    let target = models_dir
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "$WHISPER_MODELS_DIR".to_owned());
    let mut hint = match lookup(name) {
        Some(model) => format!(
            "provision it with `{PROVISION_SCRIPT} {} SOURCE_DIR {target}`, SOURCE_DIR being a \
             copy of the CTranslate2 model {} (model.bin sha256 {})",
            model.name,
            model.origin,
            model.weights_sha256()
        ),
        None => format!(
            "provision it with `{PROVISION_SCRIPT} {name} SOURCE_DIR {target} --sha256 \
             <sha256 of its model.bin>` (a model the registry does not know)"
        ),
    };
    if models_dir.is_none() {
        hint.push_str(" and set WHISPER_MODELS_DIR to that directory");
    }
    hint.push_str(&format!(
        "; see wiki/operations/transcription.md (packaged, nothing to provision: {})",
        packaged_names()
    ));
    hint
}

/// Resolves a model name (`from` says where it came from, for the messages): a packaged model,
/// or a provisioned directory of `WHISPER_MODELS_DIR`. Anything else is a task error naming the
/// model and how to provision it.
pub fn resolve(
    requested: &str,
    from: &str,
    models_dir: Option<&Path>,
) -> Result<ModelChoice, TaskError> {
    if !valid_model_name(requested) {
        return Err(TaskError::BadInput(format!(
            "{from}: {requested:?} is not a model name (letters, digits, '.', '_', '-')"
        )));
    }
    let known = lookup(requested);
    let name = known.map_or_else(|| requested.to_owned(), |m| m.name.clone());
    let multilingual = known.map(|m| m.multilingual);
    if known.is_some_and(KnownModel::is_packaged) {
        return Ok(ModelChoice {
            name,
            dir: None,
            multilingual,
        });
    }
    let not_provisioned = |why: String| {
        TaskError::BadInput(format!(
            "model {name} is not provisioned ({why}): {}",
            provisioning_hint(&name, models_dir)
        ))
    };
    let Some(models_dir) = models_dir else {
        return Err(not_provisioned("WHISPER_MODELS_DIR is not set".to_owned()));
    };
    let dir = models_dir.join(&name);
    if !dir.is_dir() {
        return Err(not_provisioned(format!("{} does not exist", dir.display())));
    }
    for required in ["model.bin", MANIFEST] {
        if !dir.join(required).is_file() {
            return Err(not_provisioned(format!(
                "{} has no {required}",
                dir.display()
            )));
        }
    }
    Ok(ModelChoice {
        name,
        dir: Some(dir),
        multilingual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_input(result: Result<ModelChoice, TaskError>) -> String {
        match result {
            Err(TaskError::BadInput(message)) => message,
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    #[test]
    fn the_registry_parses_and_names_the_esup_models() {
        let registry: Registry = serde_json::from_str(REGISTRY_JSON).expect("models.json");
        assert_eq!(registry.models.len(), known().len());
        for name in ["tiny.en", "base", "small", "medium", "large", "turbo"] {
            let model = lookup(name).unwrap_or_else(|| panic!("{name} is known"));
            let weights = model.weights_sha256();
            assert!(
                weights.len() == 64 && weights.bytes().all(|b| b.is_ascii_hexdigit()),
                "{name}: {weights:?}"
            );
        }
        assert_eq!(lookup("LARGE-v3").map(|m| m.name.as_str()), Some("large"));
        assert_eq!(
            lookup("large-v3-turbo").map(|m| m.name.as_str()),
            Some("turbo")
        );
        let packaged: Vec<&str> = known()
            .iter()
            .filter(|m| m.is_packaged())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(packaged, ["tiny.en", MULTILINGUAL_PACKAGED]);
        assert!(lookup(MULTILINGUAL_PACKAGED).is_some_and(|m| m.multilingual));
        assert!(lookup("tiny.en").is_some_and(|m| !m.multilingual));
    }

    #[test]
    fn packaged_models_need_no_directory() {
        for name in ["tiny.en", "base", "BASE"] {
            let choice = resolve(name, "parameter model", None).expect(name);
            assert_eq!(choice.dir, None, "{name}");
            assert_eq!(choice.name, name.to_ascii_lowercase());
        }
    }

    #[test]
    fn a_model_not_provisioned_names_itself_and_the_command() {
        let message = bad_input(resolve("medium", "parameter model", None));
        assert!(
            message.starts_with("model medium is not provisioned (WHISPER_MODELS_DIR is not set)")
                && message.contains("scripts/provision-whisper-model.sh medium SOURCE_DIR")
                && message.contains("Systran/faster-whisper-medium")
                && message
                    .contains("9b45e1009dcc4ab601eff815b61d80e60ce3fd8c74c1a14f4a282258286b51ae"),
            "{message}"
        );
        let models = tempfile::tempdir().expect("tempdir");
        let message = bad_input(resolve("large-v3", "parameter model", Some(models.path())));
        let missing = models.path().join("large");
        assert!(
            message.contains(&format!("{} does not exist", missing.display()))
                && message.contains(&format!(
                    "provision-whisper-model.sh large SOURCE_DIR {}",
                    models.path().display()
                )),
            "the alias resolves to large: {message}"
        );
        std::fs::create_dir(&missing).expect("dir");
        std::fs::write(missing.join("model.bin"), b"copied by hand").expect("model.bin");
        let message = bad_input(resolve("large", "parameter model", Some(models.path())));
        assert!(message.contains(&format!("has no {MANIFEST}")), "{message}");
        std::fs::write(missing.join(MANIFEST), b"{}").expect("manifest");
        let choice = resolve("large", "parameter model", Some(models.path())).expect("large");
        assert_eq!(choice.dir, Some(missing));
        assert_eq!(choice.multilingual, Some(true));

        let message = bad_input(resolve("my-finetune", "WHISPER_MODEL", None));
        assert!(message.contains("--sha256"), "{message}");
        for name in ["../etc", "a/b", ".hidden", "x y", ""] {
            let message = bad_input(resolve(name, "parameter model", None));
            assert!(message.contains("not a model name"), "{name}: {message}");
        }
    }
}
