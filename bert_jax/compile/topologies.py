"""Accelerator topologies by the names users write (`v5p-64`, `2xv5e-256`,
`4xh100x8`), their chips' published specifications, and their compile-only
devices.

The devices come from `jax.experimental.topologies.get_topology_desc`: for TPU
through libtpu (which compiles without a TPU), for NVIDIA GPUs through the
CUDA PJRT plugin's deviceless target (no GPU, no driver). Neither allocates
anything; they are only good for `jit(...).lower(...).compile()`.

Sources of every number in `CHIPS` are in docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re

from bert_jax.errors import UserError

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class ChipSpec:
    """Published per-chip figures (one JAX device = one chip here: v4/v5p run
    megacore, one device per chip's two TensorCores).

    hbm_bytes: memory per chip. peak_bf16_flops: dense bf16 FLOP/s.
    hbm_bytes_per_s: memory bandwidth. ici_bytes_per_s: bidirectional
    chip-to-chip bandwidth within a slice (ICI / NVLink).
    dcn_bytes_per_s: per-chip bandwidth between slices / hosts (DCN / InfiniBand).
    """

    name: str
    device_kind: str
    hbm_bytes: int
    peak_bf16_flops: float
    hbm_bytes_per_s: float
    ici_bytes_per_s: float
    dcn_bytes_per_s: float


GB = 1e9
CHIPS: dict[str, ChipSpec] = {
    "v4": ChipSpec("v4", "TPU v4", 32 * GIB, 275e12, 1200 * GB, 600 * GB, 6.25 * GB),
    "v5e": ChipSpec("v5e", "TPU v5 lite", 16 * 10**9, 197e12, 819 * GB, 400 * GB, 3.125 * GB),
    "v5p": ChipSpec("v5p", "TPU v5", 95 * GIB, 459e12, 2765 * GB, 1200 * GB, 6.25 * GB),
    "v6e": ChipSpec("v6e", "TPU v6 lite", 32 * 10**9, 918e12, 1638 * GB, 800 * GB, 3.125 * GB),
    "h100": ChipSpec("h100", "NVIDIA H100 80GB HBM3", 80 * 10**9, 989e12, 3350 * GB, 900 * GB, 50 * GB),
    "h200": ChipSpec("h200", "NVIDIA H200", 141 * 10**9, 989e12, 4800 * GB, 900 * GB, 50 * GB),
    # For comparing with published DGX A100 throughput (docs/scaling.md).
    "a100": ChipSpec("a100", "NVIDIA A100-SXM4-80GB", 80 * 10**9, 312e12, 2039 * GB, 600 * GB, 25 * GB),
    # Spec only (no compile-only topology): for validating the calibrated
    # prediction against published DGX-1 V100 throughput. Dense fp16 Tensor
    # Core peak (V100 has no bf16); NVLink 2: 300 GB/s bidirectional; DGX-1:
    # 4 x 100 Gb/s InfiniBand per 8 GPUs.
    "v100": ChipSpec("v100", "Tesla V100-SXM2-32GB", 32 * 10**9, 125e12, 900 * GB, 300 * GB, 6.25 * GB),
}

# libtpu's name of each TPU generation in a physical topology ("v5:2x4x4").
_LIBTPU_NAME = {"v4": "v4", "v5p": "v5", "v5e": "v5e", "v6e": "v6e"}
# v4 and v5p names count TensorCores (two per chip); v5e and v6e count chips.
_CORES_PER_CHIP_IN_NAME = {"v4": 2, "v5p": 2, "v5e": 1, "v6e": 1}
_TPU_RE = re.compile(r"^(?:(\d+)x)?(v4|v5p|v5e|v6e)-(\d+)$")
_GPU_RE = re.compile(r"^(?:(\d+)x)?(h100|h200|a100)x(\d+)$")

EXAMPLES = "v4-8, v4-32, v5e-16, v5e-256, v5p-64, v6e-8, 2xv5e-256, h100x8, 4xh100x8, h200x8, a100x8"


@dataclasses.dataclass(frozen=True)
class Topology:
    """One parsed topology name.

    num_slices: TPU slices (joined by DCN) or GPU hosts (joined by InfiniBand);
    chips_per_slice: chips on ICI / NVLink together. physical: libtpu's
    topology string ("v5:2x4x4") or the CUDA one ("slices x hosts x gpus").
    """

    name: str
    platform: str  # "tpu" | "cuda"
    chip: ChipSpec
    num_slices: int
    chips_per_slice: int
    physical: str

    @property
    def num_devices(self) -> int:
        return self.num_slices * self.chips_per_slice


def _grid(chips: int, dims: int, start: list[int]) -> list[int]:
    """Slice shape of `chips` chips as the published tables grow it: from
    `start`, double the smallest dimension (the last of equal ones)."""
    shape = list(start)
    while _prod(shape) < chips:
        smallest = min(shape)
        i = max(j for j in range(dims) if shape[j] == smallest)
        shape[i] *= 2
    return shape


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _unknown(name: str, why: str = "") -> UserError:
    return UserError(
        f"unknown topology {name!r}{': ' + why if why else ''}; known forms: {EXAMPLES} "
        "(TPU: v4-N, v5p-N with N TensorCores, N/2 chips; v5e-N, v6e-N with N chips; "
        "'Kx' in front for K slices or hosts)"
    )


def parse_topology(name: str) -> Topology:
    """`v5p-64` -> 32 v5p chips as libtpu's `v5:2x4x4`; `4xh100x8` -> 4 hosts of 8 H100s."""
    text = name.strip().lower()
    if m := _TPU_RE.match(text):
        slices, gen, count = int(m.group(1) or 1), m.group(2), int(m.group(3))
        per_chip = _CORES_PER_CHIP_IN_NAME[gen]
        if count % per_chip:
            raise _unknown(name, f"{gen} names count TensorCores, two per chip, so N must be even")
        chips = count // per_chip
        if gen in ("v4", "v5p"):
            if chips < 4 or not _is_power_of_two(chips):
                raise _unknown(name, f"{gen} slices here have a power-of-two number of chips >= 4")
            shape = _grid(chips, 3, [2, 2, 1])
        else:
            if chips > 256 or not _is_power_of_two(chips) or chips == 2:
                raise _unknown(name, f"{gen} slices have 1, 4, 8, ..., 256 chips")
            shape = _grid(chips, 2, [1, 1])
        physical = f"{_LIBTPU_NAME[gen]}:{'x'.join(map(str, shape))}"
        return Topology(name, "tpu", CHIPS[gen], slices, chips, physical)
    if m := _GPU_RE.match(text):
        hosts, gen, gpus = int(m.group(1) or 1), m.group(2), int(m.group(3))
        if gpus not in (1, 2, 4, 8):
            raise _unknown(name, "a GPU host has 1, 2, 4 or 8 GPUs")
        # NVLink spans one host: each host is its own "slice" for the CUDA topology.
        return Topology(name, "cuda", CHIPS[gen], hosts, gpus, f"{hosts}x1x{gpus}")
    raise _unknown(name)


def _required_version(package: str) -> str | None:
    """The version specifier jax's own metadata asks of `package` ("==0.0.42.*")."""
    from packaging.requirements import Requirement

    for line in importlib.metadata.requires("jax") or []:
        req = Requirement(line)
        if req.name == package:
            return str(req.specifier)
    return None


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_runtime(platform: str) -> None:
    """Raises a one-line UserError unless the compiler for `platform` is
    installed at the version this jax needs (libtpu, or the CUDA plugin)."""
    from packaging.specifiers import SpecifierSet

    jax_version = importlib.metadata.version("jax")
    fix = f"pip install 'bert-jax[tpu]' (or 'jax[tpu]=={jax_version}' 'jax-cuda12-plugin=={jax_version}' 'jax-cuda12-pjrt=={jax_version}')"
    if platform == "tpu":
        packages = {"libtpu": _required_version("libtpu") or ""}
    else:
        packages = {p: f"=={jax_version}" for p in ("jax-cuda12-plugin", "jax-cuda12-pjrt")}
    for package, spec in packages.items():
        have = _installed_version(package)
        what = "TPU" if platform == "tpu" else "NVIDIA GPU"
        if have is None:
            raise UserError(
                f"compiling for a {what} topology needs {package}{spec}, which is not installed; {fix}"
            )
        if spec and not SpecifierSet(spec).contains(have, prereleases=True):
            raise UserError(
                f"{package} {have} is installed but jax {jax_version} needs {package}{spec}; {fix}"
            )


def compile_only_devices(topology: Topology) -> list:
    """The topology's devices, ordered as `get_topology_desc` returns them."""
    from jax.experimental import topologies

    check_runtime(topology.platform)
    if topology.platform == "tpu":
        _libtpu_compile_only_env(topology)
        desc = topologies.get_topology_desc(
            topology.physical,
            "tpu",
            chip_config_name="megacore" if topology.chip.name in ("v4", "v5p") else "default",
            num_slices=topology.num_slices,
        )
    else:
        try:
            desc = topologies.get_topology_desc(
                platform="cuda", target_config=gpu_target_config(topology.chip), topology=topology.physical
            )
        except NotImplementedError as e:
            # The CUDA plugin registers its deviceless topology only when it is
            # not asked to start a GPU backend (no CUDA libraries here).
            raise UserError(
                f"topology {topology.name!r}: the CUDA plugin offers no compile-only target in this "
                "process; run with JAX_PLATFORMS=cpu (bert-jax compile sets it unless it is already set)"
            ) from e
    devices = list(desc.devices)
    if len(devices) != topology.num_devices:
        raise UserError(
            f"topology {topology.name!r}: the compiler made {len(devices)} devices, expected "
            f"{topology.num_devices}; report this with your libtpu/jax versions"
        )
    return devices


def _libtpu_compile_only_env(topology: Topology) -> None:
    """libtpu looks for a TPU VM's metadata server and workers at load and
    logs errors when there is none, and takes a machine-wide lock that fails
    a second process (a CLI run beside pytest, xdist workers). Compile-only
    use touches no TPU, so it needs neither."""
    gen = topology.chip.name
    cloud = {"v5e": "v5litepod"}.get(gen, gen)
    count = topology.chips_per_slice * _CORES_PER_CHIP_IN_NAME[gen]
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{cloud}-{count}")


# The deviceless CUDA target: what XLA would query from the driver, taken from
# each GPU's published specifications (SXM parts). Text-format
# stream_executor.GpuTargetConfigProto.
_HOPPER = dict(sms=132, major=9, l2=50 << 20, clock=1.98, smem_core=233472, smem_optin=232448, fpus=128)
_AMPERE = dict(sms=108, major=8, l2=40 << 20, clock=1.41, smem_core=167936, smem_optin=166912, fpus=64)
_GPU_TARGET = {
    "h100": dict(_HOPPER, memory=80 * 10**9, bandwidth=3_350_000_000_000, description="NVIDIA H100 80GB HBM3"),
    "h200": dict(_HOPPER, memory=141 * 10**9, bandwidth=4_800_000_000_000, description="NVIDIA H200"),
    "a100": dict(_AMPERE, memory=80 * 10**9, bandwidth=2_039_000_000_000, description="NVIDIA A100-SXM4-80GB"),
}


def gpu_target_config(chip: ChipSpec) -> str:
    """GpuTargetConfigProto text for the GPU (SM count, compute capability,
    caches, memory) as the CUDA driver would report it."""
    t = _GPU_TARGET[chip.name]
    return f"""
gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: {t["smem_core"]}
  threads_per_core_limit: 2048
  core_count: {t["sms"]}
  fpus_per_core: {t["fpus"]}
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {t["bandwidth"]}
  l2_cache_size: {t["l2"]}
  clock_rate_ghz: {t["clock"]}
  device_memory_size: {t["memory"]}
  shared_memory_per_block_optin: {t["smem_optin"]}
  cuda_compute_capability {{ major: {t["major"]} minor: 0 }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 8 }}
device_description_str: "{t["description"]}"
"""
