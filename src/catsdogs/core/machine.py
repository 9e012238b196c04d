"""Which machine made a result: part of the result, since the CNNs trained from scratch end
a few points apart on different kinds of CPU.

TensorFlow's CPU kernels are oneDNN's, and oneDNN picks them, and so the order in which it
sums, by the instruction set the CPU offers (capped by ONEDNN_MAX_CPU_ISA) and by the cores
it has. Measured: the default recipe's M1 gave validation accuracy 0.5962 on an AVX2-only
machine, 0.5850 on an AVX-512 one, 0.6100 there with oneDNN capped at AVX2; the same machine
repeats itself to the digit, and the frozen-base transfer models agree across all three.

`describe()` says what this process runs on; `fingerprint()` reduces it to a short id, equal
for two runs exactly when their numbers can be expected to be equal. No TensorFlow import:
its version is read from the installed package's metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

# oneDNN's CPU instruction-set levels, best first, with the cpuinfo flags each needs
# (oneDNN's names, as ONEDNN_MAX_CPU_ISA takes them).
ONEDNN_ISAS = (
    ("avx512_core_amx", {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni"}),
    ("avx512_core_bf16", {"avx512_bf16", "avx512_vnni", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx512_core_vnni", {"avx512_vnni", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx512_core", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx2_vnni", {"avx2", "avx_vnni"}),
    ("avx2", {"avx2", "fma"}),
    ("avx", {"avx"}),
    ("sse41", {"sse4_1"}),
)
# Beside a trained model in models/<name>/: the machine it trained on.
MACHINE_FILE = "machine.json"
# The keys a fingerprint is made of: what changes the kernels or their summation order.
FINGERPRINT_KEYS = ("cpu", "onednn_isa", "cores", "tensorflow", "keras", "onednn")


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """(CPU model name, feature flags) from the first processor entry; empty where unknown."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.machine(), flags


def onednn_isa(flags: frozenset[str], environ: Mapping[str, str] = os.environ) -> str:
    """The instruction set oneDNN uses: the best the flags offer, capped by
    ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA); "off" with TF_ENABLE_ONEDNN_OPTS=0."""
    if environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip() == "0":
        return "off"
    names = [name for name, _ in ONEDNN_ISAS]
    offered = next((name for name, needs in ONEDNN_ISAS if needs <= flags), "baseline")
    cap = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").lower()
    if cap in names and offered in names and names.index(cap) > names.index(offered):
        return cap
    return offered


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _onednn_version() -> str:
    """The oneDNN bundled with TensorFlow, from the header its package installs."""
    try:
        root = Path(metadata.distribution("tensorflow").locate_file("tensorflow"))
        header = (root / "include/external/onednn/include/oneapi/dnnl/dnnl_version.h").read_text()
    except (metadata.PackageNotFoundError, OSError):
        return "unknown"
    parts = {}
    for line in header.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "#define" and words[1].startswith("DNNL_VERSION_"):
            parts[words[1].removeprefix("DNNL_VERSION_")] = words[2]
    numbers = [parts.get(k) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(numbers) if all(numbers) else "unknown"


def describe(cpuinfo: Path = Path("/proc/cpuinfo"),
             environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """This machine as it matters for the numbers: CPU model, oneDNN's instruction set,
    usable cores, TensorFlow, Keras and oneDNN versions, and the fingerprint of them."""
    model, flags = _cpuinfo(cpuinfo)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    facts = {
        "cpu": model,
        "onednn_isa": onednn_isa(flags, environ),
        "cores": str(cores),
        "tensorflow": _version("tensorflow"),
        "keras": _version("keras"),
        "onednn": _onednn_version(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.machine()}",
    }
    return {"fingerprint": fingerprint(facts), **facts}


def fingerprint(facts: Mapping[str, str]) -> str:
    """A 12-digit id of the facts that decide the numbers (`FINGERPRINT_KEYS`)."""
    chosen = {key: str(facts.get(key, "")) for key in FINGERPRINT_KEYS}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


def summary(facts: Mapping[str, str]) -> str:
    """One line for a person: 'AMD EPYC, avx512_core_bf16, 2 cores, TF 2.21.0 (a1b2c3d4e5f6)'."""
    return (f"{facts.get('cpu', '?')}, {facts.get('onednn_isa', '?')}, {facts.get('cores', '?')} "
            f"cores, TensorFlow {facts.get('tensorflow', '?')} ({facts.get('fingerprint', '?')})")
