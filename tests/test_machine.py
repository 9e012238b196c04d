"""The machine a result was made on: what oneDNN runs with, and a fingerprint that tells
two machines apart exactly when their numbers may differ."""

from __future__ import annotations

from pathlib import Path

from catsdogs.core.machine import describe, fingerprint, onednn_isa, summary

AVX2 = frozenset({"sse4_1", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"}


def cpuinfo(tmp_path: Path, model: str, flags: frozenset[str]) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    entry = f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {' '.join(sorted(flags))}\n\n"
    path.write_text(entry + entry.replace(": 0", ": 1"))
    return path


def test_onednn_runs_the_best_instruction_set_the_cpu_offers_unless_capped() -> None:
    assert onednn_isa(AVX2, environ={}) == "avx2"
    assert onednn_isa(AVX512_BF16, environ={}) == "avx512_core_bf16"
    assert onednn_isa(AVX512_BF16 - {"avx512_bf16"}, environ={}) == "avx512_core_vnni"
    # The cap that gave M1 a third value on the AVX-512 machine.
    assert onednn_isa(AVX512_BF16, environ={"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "avx2"
    # A cap above what the CPU has changes nothing.
    assert onednn_isa(AVX2, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}) == "avx2"
    assert onednn_isa(AVX512_BF16, environ={"TF_ENABLE_ONEDNN_OPTS": "0"}) == "off"


def test_the_fingerprint_follows_what_decides_the_numbers(tmp_path: Path) -> None:
    epyc = describe(cpuinfo(tmp_path, "AMD EPYC", AVX512_BF16), environ={})
    assert epyc["cpu"] == "AMD EPYC" and epyc["onednn_isa"] == "avx512_core_bf16"
    assert epyc["tensorflow"].count(".") >= 1 and epyc["onednn"].count(".") == 2
    assert int(epyc["cores"]) >= 1 and len(epyc["fingerprint"]) == 12
    again = describe(cpuinfo(tmp_path, "AMD EPYC", AVX512_BF16), environ={})
    assert again["fingerprint"] == epyc["fingerprint"]
    capped = describe(cpuinfo(tmp_path, "AMD EPYC", AVX512_BF16),
                      environ={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    older = describe(cpuinfo(tmp_path, "Intel Xeon", AVX2), environ={})
    assert len({epyc["fingerprint"], capped["fingerprint"], older["fingerprint"]}) == 3
    # Python's version and the OS do not enter it; the cores and TensorFlow's version do.
    assert fingerprint({**epyc, "python": "3.13.0"}) == epyc["fingerprint"]
    assert fingerprint({**epyc, "cores": "16"}) != epyc["fingerprint"]
    assert fingerprint({**epyc, "tensorflow": "2.22.0"}) != epyc["fingerprint"]
    assert summary(epyc).startswith("AMD EPYC, avx512_core_bf16, ")
    assert summary(epyc).endswith(f"({epyc['fingerprint']})")
