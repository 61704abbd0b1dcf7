"""Resumable training checkpoints: trainable weights, optimizer state, the best weights so far and
the loop's counters, written at every validation so an interrupted run continues from there.

The best weights so far live on disk, never in memory while training steps run (a RAM copy would be
counted in the training peak on CPU, where the peak is the process's resident memory): a validation
that becomes the best writes them to ``best.safetensors`` in the run folder (``keep_best``), each
checkpoint holds a copy of that file (so moving ``checkpoint/`` elsewhere, as the lr search does,
moves them too), and resuming puts the checkpoint's copy back (``reinstate_best``): a resumed run
restores the best of its checkpoint's moment, as the uninterrupted run did.

Everything is stored as safetensors plus JSON: nothing is unpickled when a checkpoint is loaded
(a checkpoint folder may come from someone else's machine). Two are kept: the newest in
``checkpoint/`` and the one before it in ``checkpoint/previous/`` (twice the disk of one), so that a
damaged newest one (a truncated copy, a bad disk block) still resumes from the previous one. Each is
written beside its final place, fsynced, checked and renamed; its state.json records the sha256 of
every tensor file, checked before anything is loaded. The older of the two is removed before a new
one is written, so at most two are ever on disk and a full disk never costs the newest.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from peftlab.errors import PeftlabError
from peftlab.rundir.diskspace import writing
from peftlab.rundir.folder import BEST, RunDir, pending
from peftlab.rundir.safe_read import read_json, safetensors_problem, sha256

# Inside a checkpoint folder: its own format, read by nothing but this module.
PREVIOUS = "previous"  # the older checkpoint, inside the newest (moving `checkpoint` moves both)
STATE = "state.json"
TRAINABLE = "trainable.safetensors"
OPTIMIZER = "optimizer.safetensors"
METHOD_STATE = "method.safetensors"
NEEDED = (TRAINABLE, OPTIMIZER)


class NoReadableCheckpoint(PeftlabError):
    """Every checkpoint of the run folder is damaged (the message says how)."""


def _flat_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """AdamW's state dict as named tensors + JSON (its per-parameter state is tensors and numbers)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflat_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(
    run_dir: Path,
    trainable: dict[str, torch.Tensor],
    optimizer,
    best: Path | None,
    info: dict,
    method_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """``best``: the best weights' file (``best_file``), copied in; None when there is none yet.
    ``method_state``: what a method keeps outside its weights (AdaLoRA's rank allocator), if anything."""
    run_dir = Path(run_dir)
    final = RunDir(run_dir).checkpoint
    tmp = pending(final)
    _finish_swap(run_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(final / PREVIOUS, ignore_errors=True)  # the newest stays until the new one is complete
    opt_tensors, opt_meta = _flat_optimizer(optimizer)
    files = {TRAINABLE: trainable, OPTIMIZER: opt_tensors}
    files.update({METHOD_STATE: method_state} if method_state else {})
    try:
        tmp.mkdir(parents=True)
        sums = {name: _write_tensors(tensors, tmp / name) for name, tensors in files.items()}
        if best is not None:  # a copy, not a link: a damaged newest checkpoint leaves the previous sound
            sums[BEST] = _copy_durably(Path(best), tmp / BEST)
        state = json.dumps({**info, "optimizer": opt_meta, "sha256": sums}).encode("utf-8")
        _write_durably(tmp / STATE, state)  # last: a folder with a state.json is complete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, tmp / PREVIOUS)
    os.replace(tmp, final)
    _fsync_dir(run_dir)


def _write_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> str:
    """Write, fsync and check one tensor file; returns its sha256. safetensors writes CPU tensors
    from their own memory (no serialized copy in RAM)."""
    with writing(path):
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return _synced_and_checked(path)


def _copy_durably(src: Path, dst: Path) -> str:
    """Copy a tensor file (streamed, never whole in memory), fsync and check it; returns its sha256."""
    with writing(dst):
        shutil.copyfile(src, dst)
    return _synced_and_checked(dst)


def _synced_and_checked(path: Path) -> str:
    with path.open("rb") as f:
        os.fsync(f.fileno())
    problem = safetensors_problem(path)
    if problem:  # a write cut short without an error
        raise OSError(f"{path}: {problem} right after it was written")
    return sha256(path)


def _write_durably(path: Path, data: bytes) -> None:
    with writing(path), path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the renames themselves survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _finish_swap(run_dir: Path) -> None:
    """A save killed between its two renames left the new checkpoint (with the old one inside, as
    previous/) beside its place: finish the rename."""
    final = RunDir(run_dir).checkpoint
    tmp = pending(final)
    if not final.exists() and (tmp / PREVIOUS / STATE).is_file():
        os.replace(tmp, final)


def folders(run_dir: Path) -> list[Path]:
    """The run folder's checkpoints, newest first (those on disk)."""
    _finish_swap(Path(run_dir))
    final = RunDir(run_dir).checkpoint
    return [f for f in (final, final / PREVIOUS) if (f / STATE).is_file()]


def exists(run_dir: Path) -> bool:
    return bool(folders(run_dir))


def saved_step(run_dir: Path) -> int | None:
    """The newest checkpoint's step (its state.json alone is read), None when there is none."""
    for folder in folders(run_dir):
        info, _ = read_json(folder / STATE)
        if isinstance(info, dict) and isinstance(info.get("step"), int):
            return info["step"]
    return None


def problem(folder: Path) -> tuple[dict | None, str | None]:
    """(the checkpoint's state, None) when every file of ``folder`` is sound, else (None, what is
    wrong, naming the file). Checks the sha256 that state.json records (checkpoints of releases that
    recorded none: the safetensors headers and sizes)."""
    info, why = read_json(folder / STATE)
    if why is None and not (isinstance(info, dict) and {"step", "optimizer"} <= info.keys()):
        why = "incomplete (no step or optimizer entry)"
    if why:
        return None, f"{folder / STATE}: {why}"
    sums = info.get("sha256") or {p.name: None for p in folder.glob("*.safetensors")}
    for name in sorted(set(sums) | set(NEEDED)):
        path, expected = folder / name, sums.get(name)
        why = safetensors_problem(path)
        if why is None and expected and sha256(path) != expected:
            why = "its sha256 differs from the one state.json recorded when it was written (damaged since)"
        if why:
            return None, f"{path}: {why}"
    return info, None


def newest_sound(run_dir: Path, log: Callable[[str], None]) -> tuple[Path, dict]:
    """(folder, state) of the newest sound checkpoint; a damaged newer one is logged and passed over.
    NoReadableCheckpoint when none is sound."""
    problems = []
    for folder in folders(run_dir):
        info, why = problem(folder)
        if info is not None:
            for earlier in problems:
                log(f"{earlier}; resuming from the previous checkpoint ({folder}, step {info['step']}) instead")
            return folder, info
        problems.append(why)
    raise NoReadableCheckpoint(
        f"{RunDir(run_dir).checkpoint}: no readable checkpoint ({'; '.join(problems) or 'none saved'})"
    )


def load(
    run_dir: Path, model_params: dict[str, torch.nn.Parameter], optimizer, log: Callable[[str], None] = print
) -> tuple[dict, dict | None]:
    """Restore weights and optimizer in place from the newest sound checkpoint; returns (info, its
    best weights' file or None; ``reinstate_best`` puts it back in the run folder). ``info["folder"]``:
    the checkpoint it came from (for ``method_state``)."""
    folder, info = newest_sound(Path(run_dir), log)
    weights = load_file(folder / TRAINABLE)
    missing = set(model_params) ^ set(weights)
    if missing:
        raise PeftlabError(
            f"{folder}: checkpoint does not match the model's trainable parameters ({sorted(missing)[:3]}); "
            "start the run again without --resume (or with --overwrite)"
        )
    with torch.no_grad():
        for name, p in model_params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    device = next(iter(model_params.values())).device
    opt = load_file(folder / OPTIMIZER, device=str(device))
    optimizer.load_state_dict(_unflat_optimizer(opt, info.pop("optimizer")))
    best = folder / BEST if (folder / BEST).is_file() else None
    return {**info, "folder": str(folder)}, best


def method_state(folder: Path) -> dict[str, torch.Tensor]:
    """The method's own state saved in checkpoint ``folder`` (empty when the method keeps none)."""
    path = Path(folder) / METHOD_STATE
    return load_file(path) if path.is_file() else {}


def remove(run_dir: Path) -> None:
    """Both checkpoints, a save cut short and the best weights' file."""
    folder = RunDir(run_dir)
    shutil.rmtree(folder.checkpoint, ignore_errors=True)
    shutil.rmtree(pending(folder.checkpoint), ignore_errors=True)
    for path in (folder.best, pending(folder.best)):
        path.unlink(missing_ok=True)


# ---- the best weights so far: a file in the run folder, not a copy in memory ---------------------
def keep_best(run_dir: Path, trainable: dict[str, torch.Tensor], step: int) -> None:
    """Write ``trainable`` as the best weights (of ``step``): beside the file, then renamed over it,
    so a crash leaves the earlier best whole."""
    final = RunDir(run_dir).best
    tmp = pending(final)
    try:
        _write_tensors(trainable, tmp, metadata={"step": str(step)})
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    _fsync_dir(Path(run_dir))


def best_file(run_dir: Path) -> Path | None:
    path = RunDir(run_dir).best
    return path if path.is_file() else None


def reinstate_best(run_dir: Path, best: Path | None) -> None:
    """Resuming: the best weights of the checkpoint resumed from (``load``'s file) become the run's;
    a later best was found by work the resumed run redoes. None: no best yet, any later one removed."""
    final = RunDir(run_dir).best
    tmp = pending(final)
    if best is None:
        final.unlink(missing_ok=True)
        return
    _copy_durably(best, tmp)
    os.replace(tmp, final)
    _fsync_dir(Path(run_dir))


def read_best(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The best weights kept at ``step`` (the state's best_step). A file of another step is an error:
    restoring it would report one validation's score with another step's weights."""
    path = RunDir(run_dir).best
    with safe_open(str(path), framework="pt") as f:
        kept = (f.metadata() or {}).get("step")  # checkpoints of older releases recorded none
        if kept is not None and int(kept) != step:
            raise PeftlabError(f"{path}: holds the weights of step {kept}, but the best validation was at step {step}")
        return {name: f.get_tensor(name) for name in f.keys()}


def disk_bytes(run_dir: Path) -> int:
    """What the run folder's checkpoints take on disk (space a resumed run writes over)."""
    return sum(p.stat().st_size for p in RunDir(run_dir).checkpoint.rglob("*") if p.is_file())
