"""Geodite's inference kernels as compiled custom operators (``torch.ops.geodite``), and which kernels run.

``geodite/csrc/fused_ops.cpp`` holds hand-written CPU loops (per destination atom, vectorised, threaded) for
the sums that ``geodite/model/fused.py`` writes as readable edge-block Python, and defines eight operators:

    geodite::interaction_messages(attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver, num_heads)
        -> (Δh [N, F], ΔX [N, 8, F])
    geodite::interaction_messages_backward(grad_h, grad_X, <the 10 tensors above>, num_heads) -> 8 gradients
    geodite::interaction_messages_t(t, weight_r, weight_s, Y, q, k, values, filters, X, sender, receiver, num_heads)
        -> (Δh, ΔX): the same with attention_in = t W_rᵀ, filter_in = t W_sᵀ made chunk by chunk of edges (the
        backward pass recomputes them: autograd keeps t [E, F], not [E, 4F]); no gradient for the weights
    geodite::interaction_messages_t_backward(grad_h, grad_X, <the 11 tensors above>, num_heads) -> 7 gradients
    geodite::edge_gate_update(t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps, keep)
        -> (t' [E, F], pre_hidden, pre_gate, update, stats): the edge update's gate and residual, chunk by chunk of
        edges; with ``keep`` the last four are its intermediates for the backward pass, else they have no rows
        (the backward pass recomputes them); no gradient for the weights
    geodite::edge_gate_update_backward(grad, <the 8 inputs but keep>, pre_hidden, pre_gate, update, stats)
        -> (grad_t, grad_w)
    geodite::rejected_inner_product(Q, K, Y, sender, receiver) -> w [E, C]
    geodite::rejected_inner_product_backward(grad_w, Q, K, Y, sender, receiver) -> (grad_Q, grad_K, grad_Y)

Being C++, they run where Python does not: an exported package (``geodite export``) calls them by name, and
a C++ program runs such a package once the library is loaded (``pair_style geodite`` links it). This module
builds the library (``build_library``: the system C++ compiler against the torch wheel's headers and
libtorch; the one recipe, which ``lammps/build.sh`` uses too), loads it, and registers for each forward
operator its fake (shape) kernel and its autograd formula (the backward operator; differentiable once, like
fused.py's Functions, which is what energy → forces and stress needs).

Which kernels an evaluation-mode model runs (fused.py's entry points: ``interaction_messages``,
``interaction_messages_t``, ``edge_gate_update``, ``rejected_inner_product_edges``): the operators on CPU
tensors, building the library on first use (``auto``, the default); fused.py's Python Functions where it cannot
be built (no compiler: a warning, once) and on other devices. ``$GEODITE_KERNELS``
(``auto``, ``ops``, ``python``) or the ``compiled_kernels()`` / ``python_kernels()`` contexts choose instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).parent / "csrc" / "fused_ops.cpp"
LIBRARY_NAME = "libgeodite_ops"
#: environment variable choosing the kernels: auto (default), ops or python (module docstring)
KERNELS_ENV = "GEODITE_KERNELS"
KERNEL_CHOICES = ("auto", "ops", "python")
#: the kernels chosen by compiled_kernels() / python_kernels() in this context (None: $GEODITE_KERNELS)
KERNELS: contextvars.ContextVar[str | None] = contextvars.ContextVar("geodite_kernels", default=None)

#: -fopenmp: at::parallel_for is a header template whose parallel region is an `omp parallel` pragma, so without
#: it every operator ran on one thread whatever torch.set_num_threads said; the team is torch's own (the library
#: links libgomp.so.1, the soname torch's wheel ships and has loaded: one OpenMP runtime, one thread count). No
#: -march: the source compiles AVX-512, AVX2 and baseline clones of its loops and the CPU picks one at load
#: time, so a library built on one x86-64 machine runs on any other. -mprefer-vector-width=256 (x86-64): 256-bit
#: vectors in the AVX-512 clone too, since a head's C = F/H channels (24 at the published size) fill 8-wide float
#: vectors but leave a scalar remainder of 16-wide ones, and Zen 4 runs a 512-bit operation as two 256-bit halves
#: anyway: the interaction's operators 8.8–9.0 against 9.6–10.0 ms (backward) and 3.3–3.6 against 3.5–3.9 ms
#: (forward) on the 216-atom graph, 2 threads (`python benchmarks/kernel_ops.py --threads 1 2`, alternated 3 times)
COMPILER_FLAGS = ("-O3", "-fopenmp", "-std=c++17", "-shared", "-fPIC",
                  *(("-mprefer-vector-width=256",) if platform.machine() in ("x86_64", "AMD64") else ()))

_loaded: Path | None = None
_unavailable: str | None = None  # why the library could not be built (auto mode then runs fused.py)


class CustomOpsError(RuntimeError):
    """The kernels' library cannot be built (no C++ compiler, a compiler error)."""


def library_key() -> str:
    """What decides the library's binary: its source, the torch version, the C++ ABI and the compiler flags."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(f"{torch.__version__} {torch._C._GLIBCXX_USE_CXX11_ABI} {' '.join(COMPILER_FLAGS)}".encode())
    return digest.hexdigest()[:16]


def compile_command(output: Path) -> list[str]:
    """The compiler call that builds ``output`` (a shared library) from SOURCE against the torch wheel.

    ``$CXX`` (default ``c++``) with torch's include and library paths, its C++ ABI and an rpath to libtorch."""
    from torch.utils.cpp_extension import include_paths, library_paths

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise CustomOpsError(f"no C++ compiler {compiler!r} on PATH (set CXX) to build Geodite's kernels")
    torch_lib = library_paths()[0]
    return [compiler, *COMPILER_FLAGS,
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
            *(f"-I{path}" for path in include_paths()), str(SOURCE), "-o", str(output),
            f"-L{torch_lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}"]


def build_library(directory: Path | None = None) -> Path:
    """``directory``/libgeodite_ops-KEY.so, compiled unless it exists (default directory: the geodite cache's
    ``ops``). About a minute on one core."""
    if directory is None:
        from geodite.data.downloads import cache_dir

        directory = cache_dir() / "ops"
    directory = Path(directory)
    path = directory / f"{LIBRARY_NAME}-{library_key()}.so"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        partial = Path(scratch) / path.name
        result = subprocess.run(compile_command(partial), capture_output=True, text=True)
        if result.returncode != 0:
            raise CustomOpsError(f"compiling {SOURCE.name} failed:\n{result.stderr[-4000:]}")
        partial.replace(path)
    return path


def load_library(path: Path | None = None) -> Path:
    """Load the kernels (built by ``build_library`` unless ``path`` is given) into this process, once, and
    register their fake kernels and autograd formulas. Returns the library loaded."""
    global _loaded
    if _loaded is None:
        path = Path(path) if path is not None else build_library()
        torch.ops.load_library(str(path))
        _register()
        _loaded = path
    return _loaded


@contextlib.contextmanager
def compiled_kernels() -> Iterator[None]:
    """Within: the model's kernels (fused.py's entry points) run the ``geodite::`` operators, loaded on entry (an
    error if the library cannot be built)."""
    load_library()
    token = KERNELS.set("ops")
    try:
        yield
    finally:
        KERNELS.reset(token)


@contextlib.contextmanager
def python_kernels() -> Iterator[None]:
    """Within: the model's kernels run fused.py's Python Functions (the reference), whatever $GEODITE_KERNELS."""
    token = KERNELS.set("python")
    try:
        yield
    finally:
        KERNELS.reset(token)


def use_operators(device: torch.device) -> bool:
    """Whether the model's kernels on ``device`` run the ``geodite::`` operators (module docstring). In ``auto``
    mode the first call on a CPU builds (or finds in the cache) and loads the library."""
    global _unavailable
    choice = KERNELS.get() or os.environ.get(KERNELS_ENV) or "auto"
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"${KERNELS_ENV} must be one of {', '.join(KERNEL_CHOICES)}, not {choice!r}")
    if choice == "python":
        return False
    if choice == "ops":
        load_library()
        return True
    if device.type != "cpu" or _unavailable is not None:
        return False
    if _loaded is None:
        if torch.compiler.is_compiling():  # never build inside a trace: the caller loads first (Evaluator)
            return False
        try:
            load_library()
        except CustomOpsError as error:
            _unavailable = str(error)
            warnings.warn(f"Geodite's compiled kernels are unavailable, running the slower Python ones: {error}",
                          RuntimeWarning, stacklevel=2)
            return False
    return True


def _register() -> None:
    """Fake kernels (output shapes for tracing) and autograd formulas of the four forward operators."""
    ops = torch.ops.geodite

    @torch.library.register_fake("geodite::interaction_messages")
    def _(attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver, num_heads):
        return X.new_empty((X.shape[0], X.shape[-1])), torch.empty_like(X)

    @torch.library.register_fake("geodite::interaction_messages_backward")
    def _(grad_h, grad_X, attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver, num_heads):
        return tuple(torch.empty_like(x) for x in (attention_in, filter_in, Y, q, k, values, filters, X))

    @torch.library.register_fake("geodite::interaction_messages_t")
    def _(t, weight_r, weight_s, Y, q, k, values, filters, X, sender, receiver, num_heads):
        return X.new_empty((X.shape[0], X.shape[-1])), torch.empty_like(X)

    @torch.library.register_fake("geodite::interaction_messages_t_backward")
    def _(grad_h, grad_X, t, weight_r, weight_s, Y, q, k, values, filters, X, sender, receiver, num_heads):
        return tuple(torch.empty_like(x) for x in (t, Y, q, k, values, filters, X))

    @torch.library.register_fake("geodite::edge_gate_update")
    def _(t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps, keep):
        kept = t.shape[0] if keep else 0
        return (torch.empty_like(t), t.new_empty((kept, weight_in.shape[0])), t.new_empty((kept, t.shape[1])),
                t.new_empty((kept, t.shape[1])), t.new_empty((kept, 2)))

    @torch.library.register_fake("geodite::edge_gate_update_backward")
    def _(grad, t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps, pre_hidden, pre_gate, update,
          stats):
        return torch.empty_like(t), torch.empty_like(w)

    @torch.library.register_fake("geodite::rejected_inner_product")
    def _(Q, K, Y, sender, receiver):
        return Q.new_empty((Y.shape[0], Q.shape[-1]))

    @torch.library.register_fake("geodite::rejected_inner_product_backward")
    def _(grad, Q, K, Y, sender, receiver):
        return torch.empty_like(Q), torch.empty_like(K), torch.empty_like(Y)

    def save_interaction(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs[:-1])
        ctx.num_heads = inputs[-1]

    def save_rejected(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    def interaction_backward(ctx, grad_h: Tensor, grad_X: Tensor):  # autograd gives zeros for unused outputs
        return (*ops.interaction_messages_backward(grad_h, grad_X, *ctx.saved_tensors, ctx.num_heads), None, None,
                None)

    def interaction_t_backward(ctx, grad_h: Tensor, grad_X: Tensor):
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            raise RuntimeError("geodite::interaction_messages_t has no gradient for its weights (inference only): "
                               "pass them detached")
        grad_t, *rest = ops.interaction_messages_t_backward(grad_h, grad_X, *ctx.saved_tensors, ctx.num_heads)
        return (grad_t, None, None, *rest, None, None, None)

    def save_gate(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs[:7], *output[1:])  # t, w, the weights; what the forward pass kept
        ctx.eps = inputs[7]
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)  # no zero [E, F] gradients for the kept tensors

    def gate_backward(ctx, grad: Tensor | None, *kept):
        if any(ctx.needs_input_grad[2:7]):
            raise RuntimeError("geodite::edge_gate_update has no gradient for its weights (inference only): pass "
                               "them detached")
        if grad is None:
            return (None,) * 9
        t, w, *weights, pre_hidden, pre_gate, update, stats = ctx.saved_tensors
        grad_t, grad_w = ops.edge_gate_update_backward(grad, t, w, *weights, ctx.eps, pre_hidden, pre_gate, update,
                                                       stats)
        return grad_t, grad_w, None, None, None, None, None, None, None

    def rejected_backward(ctx, grad: Tensor):
        return (*ops.rejected_inner_product_backward(grad, *ctx.saved_tensors), None, None)

    torch.library.register_autograd("geodite::interaction_messages", interaction_backward,
                                    setup_context=save_interaction)
    torch.library.register_autograd("geodite::interaction_messages_t", interaction_t_backward,
                                    setup_context=save_interaction)
    torch.library.register_autograd("geodite::rejected_inner_product", rejected_backward, setup_context=save_rejected)
    torch.library.register_autograd("geodite::edge_gate_update", gate_backward, setup_context=save_gate)

