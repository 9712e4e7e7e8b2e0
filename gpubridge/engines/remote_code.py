"""Loading models whose code lives in their hub repository (``trust_remote_code``).

transformers 5 builds models on the meta device and fills only the tensors the checkpoint holds;
non-persistent buffers that remote code computes in ``__init__`` (rotary tables, attention masks)
are left as uninitialised memory unless the class re-creates them in ``_init_weights``, which
older remote code does not. So these models are built in full on the CPU, where ``__init__``
computes those buffers, and their checkpoint tensors are copied in afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def checkpoint_files(path: str, local_only: bool, revision: str | None) -> list[Path]:
    """The safetensors files of a local model directory or of a hub repository's revision."""
    directory = Path(path)
    if not directory.is_dir():
        from huggingface_hub import snapshot_download

        directory = Path(
            snapshot_download(
                path,
                revision=revision,
                local_files_only=local_only,
                allow_patterns=["*.safetensors", "*.json", "*.py"],
            )
        )
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors checkpoint found")
    return files


def load_remote_code_model(
    path: str, config: Any, dtype: Any, *, local_only: bool, revision: str | None
) -> Any:
    """Build the remote-code causal-LM class of ``config`` and load its checkpoint into it."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    auto: Any = AutoModelForCausalLM
    model: Any = auto.from_config(config, trust_remote_code=True, dtype=dtype)
    state: dict[str, Any] = {}
    for file in checkpoint_files(path, local_only, revision):
        state.update(load_file(str(file)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    parameters = dict(model.named_parameters())
    # Buffers absent from the checkpoint keep the values __init__ computed.
    missing = [key for key in missing if key in parameters]
    if unexpected or missing:
        raise ValueError(
            f"{path}: the checkpoint does not match the model "
            f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})"
        )
    return model
