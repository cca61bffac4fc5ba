"""Export a Geodite model as an AOTInductor package (``.pt2``) that runs without Python (C++, LAMMPS).

Recipe: the energy and its force/stress autograd are traced together with ``make_fx(tracing_mode="symbolic")``
(torch.export cannot trace ``torch.autograd.grad`` itself), the traced graph is exported with dynamic
numbers of atoms, edges and structures, then compiled by AOTInductor. Two parts of the eager model do
not export as they are: the vacuum atoms (``torch.unique``) are replaced by the exact ``vacuum_features``
table, and the edge-chunked inference kernels (Python loops over edge blocks) by either (``kernels``)

- ``ops`` (default): the same loops compiled in C++ as the custom operators ``geodite::*``
  (geodite/custom_ops.py), which the package calls by name; whoever runs it must load that library first
  (``ExportedGeodite`` does; ``pair_style geodite`` links it), or
- ``plain``: the plain autograd path of training mode, with attention dropout off: a self-contained graph
  that keeps [E, 3F] and [E, 8, F] per-edge tensors for the backward pass.

The energy is differentiated with respect to the edge vectors r_ij (receiver i to sender j), not the
positions: the per-edge gradients ∂E/∂r_ij give the forces, the virial and its split over atoms, which
LAMMPS needs for ``compute stress/atom`` (the eager model differentiates positions and a strain instead;
both agree to float rounding).

The package's function takes, in this order (N atoms, E edges, B structures; lengths in Å):

    positions [N, 3], cell [B, 3, 3], pbc [B, 3] bool, z [N] long, batch [N] long,
    edge_index [2, E] long (sender j, receiver i), shifts [E, 3] (integer cell shifts, as floats),
    local [N] (1.0 for atoms whose energy counts, 0.0 for ghost copies)

and returns (energy [B] eV, atomic_energies [N] eV, forces [N, 3] eV/Å, stress [B, 3, 3] eV/Å³, ASE sign;
zeros if exported without stress or not periodic, atomic_virials [N, 3, 3] eV). Floating inputs have the
export dtype. Its metadata (``METADATA_KEYS``) records the cutoff, layers, dtype, elements, whether stress
was exported, and ``format`` (packages without it are format 1, which lack atomic_virials; format 2 adds
them; format 3 packages call the ``geodite::`` operators, named by the ``kernels`` key).

Per-atom virials (LAMMPS's sign, W = Σ r ⊗ F): W_i = −½ Σ_{edges e touching i} r_e ⊗ ∂E/∂r_e, half of each
edge's term to each end, row index from r. They sum to the virial of the structure, −stress × volume if
periodic, and with ghost copies (LAMMPS domains) the copies of an atom sum to its periodic W_i.

Format 4 packages hold, besides that function (the package's model ``model``), the model cut into its L + 2
stages (``geodite.model.stages``) for domains that exchange node features between stages (``pair_style
geodite``, ``geodite.domains``): models ``stage0`` … ``stage{L+1}`` (the stage's forward function) and
``stage0_vjp`` … (its vector–Jacobian product), with the metadata keys ``stages`` (L + 2) and ``num_channels``
(F). Format 5 (the one written now) has the same models with other signatures: each stage also returns the
tensors its product needs, which the product takes instead of computing the stage's forward pass again
(``split_joint``; ``geodite.domains`` StageFn, StageVjpFn):

    stage{k}(vectors [E, 3] Å (receiver to sender), z [N] long, edge_index [2, E] long, h [N, F], X [N, 8, F],
             t [E, F]) -> (energy [N] eV, h, X, t, *saved)
    stage{k}_vjp(vectors, z, edge_index, local [N], h, X, t, grad_h, grad_X, grad_t, *saved)
             -> (grad_vectors [E, 3] eV/Å, grad_h, grad_X, grad_t)

``saved`` are per row or per edge of the caller's graph (their number and shapes differ between stages; a
caller keeps them from a stage's forward call to its product's). Format 4's products took no saved tensors;
this reader's ``load_stages`` and ``pair_style geodite`` refuse format 4 (the whole graph still loads).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from ase.build import bulk
from torch import Tensor, nn

from geodite.custom_ops import SOURCE, compiled_kernels, load_library
from geodite.domains import edge_forces_and_virials
from geodite.graph import DTYPES, AtomGraph, build_graph
from geodite.model import Geodite
from geodite.model.harmonics import NUM_STEERABLE
from geodite.model.ops import edge_vectors, scatter_sum
from geodite.model.stages import Stage, StageJoint

INPUT_NAMES = ("positions", "cell", "pbc", "z", "batch", "edge_index", "shifts", "local")
OUTPUT_NAMES = ("energy", "atomic_energies", "forces", "stress", "atomic_virials")
METADATA_KEYS = ("cutoff", "num_layers", "max_z", "dtype", "stress", "elements")
#: version of what a package needs from its reader: 1 had no atomic_virials and no ``format`` key; 2 adds them;
#: 3 (``kernels`` = ``ops``) calls the ``geodite::`` custom operators, which the reader must load first;
#: 4 adds the stages and their vector–Jacobian products (either kernels; ``kernels`` says which); 5: the stages
#: return the tensors their products need, which take them (module docstring)
PACKAGE_FORMAT = 5
#: the implementations of the edge-chunked kernels an export can use (module docstring)
KERNELS = ("ops", "plain")


class ExportError(ValueError):
    """A model or package that cannot be exported or loaded (bad dtype, wrong file)."""


class ExportableGeodite(nn.Module):
    """Geodite with tensor-only inputs and outputs (see the module docstring), ready for tracing.

    Holds its own copy of ``model``: in evaluation mode running the ``geodite::`` operators (``kernels="ops"``),
    or in training mode (plain autograd kernels) with attention dropout off (``"plain"``); either way its
    numbers are the eager evaluation's up to float rounding.
    """

    def __init__(self, model: Geodite, compute_stress: bool = True, kernels: str = "ops"):
        super().__init__()
        self.model, vacuum = prepared_model(model, kernels)
        self.register_buffer("vacuum", vacuum)
        self.compute_stress = compute_stress
        self.kernels = kernels

    def forward(self, positions: Tensor, cell: Tensor, pbc: Tensor, z: Tensor, batch: Tensor, edge_index: Tensor,
                shifts: Tensor, local: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The package's function (module docstring): energy, atomic energies, forces, stress, atomic virials."""
        num_atoms, num_structures = positions.shape[0], cell.shape[0]
        receiver = edge_index[1]
        vectors = edge_vectors(positions, cell, batch, edge_index, shifts).detach().requires_grad_(True)
        with compiled_kernels() if self.kernels == "ops" else contextlib.nullcontext():
            atomic = self.model.atomic_energies(z, edge_index, vectors, self.vacuum) * local
        energy = scatter_sum(atomic, batch, num_structures)
        (gradients,) = torch.autograd.grad(energy.sum(), [vectors], materialize_grads=True)  # ∂E/∂r_e [E, 3] eV/Å
        forces, atomic_virials = edge_forces_and_virials(vectors.detach(), gradients, edge_index, num_atoms)
        if self.compute_stress:
            edge_virials = -vectors.detach().unsqueeze(-1) * gradients.unsqueeze(-2)  # [E, 3, 3] eV
            stress = virial_stress(scatter_sum(edge_virials, batch[receiver], num_structures), cell, pbc)
        else:
            stress = torch.zeros_like(cell)
        return energy.detach(), atomic.detach(), forces, stress, atomic_virials


def prepared_model(model: Geodite, kernels: str) -> tuple[Geodite, Tensor]:
    """A copy of ``model`` as an export runs it, and its vacuum table [max_z, L, F]: in evaluation mode
    (``ops``: the edge-chunked kernels, which ``compiled_kernels`` turns into the ``geodite::`` operators), or
    in training mode with attention dropout off (``plain``: plain autograd kernels)."""
    if kernels not in KERNELS:
        raise ExportError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        vacuum = model.vacuum_features()
    if kernels == "plain":
        for interaction in model.interactions:
            interaction.attn_dropout = 0.0
        model.train()
    return model, vacuum


def virial_stress(virial: Tensor, cell: Tensor, pbc: Tensor) -> Tensor:
    """ASE stress [B, 3, 3] eV/Å³ = −sym(W) / V of virials ``virial`` [B, 3, 3] eV; zero where not periodic."""
    volume = torch.linalg.det(cell).abs()
    periodic = pbc.all(dim=-1) & (volume > 0)
    volume = torch.where(periodic, volume, torch.ones_like(volume)).view(-1, 1, 1)
    stress = -0.5 * (virial + virial.transpose(-1, -2)) / volume
    return torch.where(periodic.view(-1, 1, 1), stress, torch.zeros_like(stress))


def graph_inputs(graph: AtomGraph, local: Tensor | None = None) -> tuple[Tensor, ...]:
    """The package's inputs (INPUT_NAMES order) for an AtomGraph; ``local`` defaults to every atom."""
    if local is None:
        local = graph.positions.new_ones(graph.positions.shape[0])
    return (graph.positions, graph.cell, graph.pbc, graph.z, graph.batch, graph.edge_index, graph.shifts, local)


def example_graph(cutoff: float, dtype: torch.dtype) -> AtomGraph:
    """A tracing example whose sizes are all distinct and > 3 (symbolic tracing gives equal sizes one symbol
    and specialises sizes 0, 1): four small periodic structures of two elements."""
    structures = [bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.6),
                  bulk("NaCl", "rocksalt", a=5.5) * (1, 1, 2)]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.05, seed=k)
    return build_graph(structures, cutoff, dtype)


def trace(model: Geodite, dtype: str = "float64", compute_stress: bool = True,
          kernels: str = "ops") -> torch.fx.GraphModule:
    """The energy, forces and stress of ``model`` as one symbolic FX graph without autograd calls."""
    from torch.fx.experimental.proxy_tensor import make_fx

    if dtype not in DTYPES:
        raise ExportError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    module = ExportableGeodite(model.to(DTYPES[dtype]), compute_stress, kernels)
    example = graph_inputs(example_graph(model.cutoff, DTYPES[dtype]))
    return make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)


def export_program(model: Geodite, dtype: str = "float64", compute_stress: bool = True,
                   kernels: str = "ops") -> torch.export.ExportedProgram:
    """torch.export of the traced graph with dynamic atoms (N), edges (E) and structures (B)."""
    traced = trace(model, dtype, compute_stress, kernels)
    example = graph_inputs(example_graph(model.cutoff, DTYPES[dtype]))
    atoms, edges, structures = (torch.export.Dim(name, min=0) for name in ("atoms", "edges", "structures"))
    dynamic = ({0: atoms}, {0: structures}, {0: structures}, {0: atoms}, {0: atoms}, {1: edges}, {0: edges},
               {0: atoms})
    return torch.export.export(traced, example, dynamic_shapes=dynamic, strict=False)


def stage_inputs(model: Geodite, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """Example inputs of a stage's joint function (``StageJoint``: vectors, z, edge_index, local, h, X, t and the
    cotangents grad_h, grad_X, grad_t) on ``example_graph``'s edges, with random features and cotangents."""
    graph = example_graph(model.cutoff, dtype)
    vectors = edge_vectors(graph.positions, graph.cell, graph.batch, graph.edge_index, graph.shifts)
    atoms, edges, channels = graph.positions.shape[0], graph.edge_index.shape[1], model.config.num_channels
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(shape, generator=generator, dtype=dtype)
                for shape in ((atoms, channels), (atoms, NUM_STEERABLE, channels), (edges, channels))]
    cotangents = [torch.randn(x.shape, generator=generator, dtype=dtype) for x in features]
    return (vectors, graph.z, graph.edge_index, torch.ones(atoms, dtype=dtype), *features, *cotangents)


#: positions of the stage's own inputs (vectors, z, edge_index, h, X, t) among StageJoint's; the others are the
#: cotangents (local, grad_h, grad_X, grad_t)
STAGE_INPUTS = (0, 1, 2, 4, 5, 6)
#: StageJoint's first four outputs are the stage's (energy, h, X, t), the rest the gradients
STAGE_OUTPUTS = 4
#: operators whose results the vector–Jacobian product computes again instead of receiving them: views and
#: shape arithmetic (free)
VIEW_OPS = {torch.ops.aten.select.int, torch.ops.aten.slice.Tensor, torch.ops.aten.view.default,
            torch.ops.aten.unsqueeze.default, torch.ops.aten.squeeze.dim, torch.ops.aten.t.default,
            torch.ops.aten.transpose.int, torch.ops.aten.permute.default, torch.ops.aten.expand.default,
            torch.ops.aten.alias.default, torch.ops.aten.detach.default, torch.ops.aten.sym_size.int}


def split_joint(joint: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule]:
    """A traced ``StageJoint`` cut into the stage's forward function, which also returns the tensors its
    vector–Jacobian product needs (``saved``), and that product taking them (``geodite.domains`` StageFn,
    StageVjpFn): stage(vectors, z, edge_index, h, X, t) -> (energy, h, X, t, *saved) and vjp(vectors, z,
    edge_index, local, h, X, t, grad_h, grad_X, grad_t, *saved) -> (grad_vectors, grad_h, grad_X, grad_t).

    The forward part is every node the stage's outputs need; ``saved`` are its tensors that the gradients need,
    except what the product computes again for free from its own inputs: the parameters and whatever depends on
    no input (constants), views of its inputs and shape arithmetic. Everything else of the gradients is the
    product's."""
    import operator

    graph = joint.graph
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    (output,) = [node for node in graph.nodes if node.op == "output"]
    forward_outputs, gradients = output.args[0][:STAGE_OUTPUTS], output.args[0][STAGE_OUTPUTS:]
    forward = ancestors(forward_outputs)
    forward |= {node for node in graph.nodes if node.target is operator.getitem and node.args[0] in forward}
    if forward & {placeholders[k] for k in range(len(placeholders)) if k not in STAGE_INPUTS}:
        raise ExportError("the stage's outputs depend on the cotangents")
    reads_inputs, free = {}, set()  # free: what the product computes from its own inputs at no cost
    for node in graph.nodes:
        inputs = node.all_input_nodes
        reads_inputs[node] = node.op == "placeholder" or any(reads_inputs[x] for x in inputs)
        if node.op in ("placeholder", "get_attr") or (all(x in free for x in inputs) and (
                not reads_inputs[node] or node.target in VIEW_OPS or is_scalar(node))):
            free.add(node)
    saved, backward, stack, seen = [], set(), list(gradients), set()
    while stack:
        node = stack.pop()
        if node in seen or node.op == "placeholder":
            continue
        seen.add(node)
        if node in forward and node not in free:
            if not is_tensor(node):
                raise ExportError(f"the stage's vector–Jacobian product needs {node.format_node()}, not a tensor")
            saved.append(node)
            continue
        backward.add(node)
        stack.extend(node.all_input_nodes)
    order = {node: k for k, node in enumerate(graph.nodes)}
    saved.sort(key=order.__getitem__)

    def subgraph(inputs: list, nodes: set, outputs: list) -> torch.fx.GraphModule:
        new, env = torch.fx.Graph(), {}
        for node in inputs:
            env[node] = new.placeholder(node.name)
            env[node].meta = dict(node.meta)
        for node in graph.nodes:
            if node in nodes and node not in env:
                env[node] = new.node_copy(node, env.__getitem__)
        new.output(tuple(env[node] for node in outputs))
        new.lint()
        return torch.fx.GraphModule(joint, new)

    stage_inputs_ = [placeholders[k] for k in STAGE_INPUTS]
    forward_part = ancestors([*forward_outputs, *saved], stop=set(placeholders))
    return (subgraph(stage_inputs_, forward_part, [*forward_outputs, *saved]),
            subgraph([*placeholders, *saved], backward, list(gradients)))


def ancestors(nodes, stop: set | None = None) -> set:
    """``nodes`` and every node they depend on (not beyond ``stop``)."""
    found, stack = set(), list(nodes)
    while stack:
        node = stack.pop()
        if node in found:
            continue
        found.add(node)
        if stop is None or node not in stop:
            stack.extend(node.all_input_nodes)
    return found


def is_scalar(node: torch.fx.Node) -> bool:
    """Whether ``node`` is shape arithmetic (a symbolic or plain number)."""
    return isinstance(node.meta.get("val"), (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool))


def is_tensor(node: torch.fx.Node) -> bool:
    return isinstance(node.meta.get("val"), torch.Tensor)


def stage_graphs(model: Geodite, index: int, dtype: str = "float64",
                 kernels: str = "ops") -> tuple[torch.fx.GraphModule, torch.fx.GraphModule]:
    """Stage ``index`` of ``model`` and its vector–Jacobian product as FX graphs (``split_joint``), traced by
    make_fx with symbolic sizes like the whole graph (the product's autograd unrolled). They run as they are
    (``ops``: with the geodite:: operators loaded) or go to ``stage_programs``."""
    from torch.fx.experimental.proxy_tensor import make_fx

    if dtype not in DTYPES:
        raise ExportError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    prepared, vacuum = prepared_model(model.to(DTYPES[dtype]), kernels)
    joint = StageJoint(Stage(prepared, vacuum, index))
    with compiled_kernels() if kernels == "ops" else contextlib.nullcontext():
        traced = make_fx(joint, tracing_mode="symbolic", _allow_non_fake_inputs=True)(
            *stage_inputs(model, DTYPES[dtype]))
    return split_joint(traced)


def stage_programs(model: Geodite, index: int, dtype: str = "float64",
                   kernels: str = "ops") -> tuple[torch.export.ExportedProgram, torch.export.ExportedProgram]:
    """torch.export of stage ``index`` of ``model`` and of its vector–Jacobian product (``stage_graphs``) with
    dynamic atoms and edges; the saved tensors' sizes follow the symbolic trace (atoms, edges or fixed)."""
    forward, vjp = stage_graphs(model, index, dtype, kernels)
    example = stage_inputs(model, DTYPES[dtype])
    inputs = [example[k] for k in STAGE_INPUTS]
    with compiled_kernels() if kernels == "ops" else contextlib.nullcontext(), torch.no_grad():
        saved = forward(*inputs)[STAGE_OUTPUTS:]
    atoms, edges = torch.export.Dim("atoms", min=0), torch.export.Dim("edges", min=0)
    placeholders = [node for node in vjp.graph.nodes if node.op == "placeholder"]
    roots = {placeholders[1].meta["val"].shape[0].node.expr: atoms,  # z [N], vectors [E, 3]
             placeholders[0].meta["val"].shape[0].node.expr: edges}

    def dim(size: torch.SymInt):
        """atoms or edges, or a multiple of one (a reshaped saved tensor, e.g. [3 N]), as the trace says."""
        import sympy

        expr = size.node.expr
        for symbol, root in roots.items():
            if expr.free_symbols == {symbol}:
                a, b = sympy.Poly(expr, symbol).all_coeffs() if sympy.degree(expr, symbol) == 1 else (None, None)
                if a is not None:
                    return root if (a, b) == (1, 0) else root * int(a) + int(b)
        return torch.export.Dim.AUTO

    def dims(node: torch.fx.Node) -> dict:
        return {k: dim(size) for k, size in enumerate(node.meta["val"].shape)
                if not isinstance(size, int) and size.node.expr.free_symbols}  # the rest: fixed sizes

    rows, features = ({0: edges}, {0: atoms}, {1: edges}), ({0: atoms}, {0: atoms}, {0: edges})
    forward_program = torch.export.export(forward, tuple(inputs), dynamic_shapes=(*rows, *features), strict=False)
    vjp_dynamic = (*rows, {0: atoms}, *features, *features, *(dims(node) for node in placeholders[len(example):]))
    vjp_program = torch.export.export(vjp, (*example, *saved), dynamic_shapes=vjp_dynamic, strict=False)
    return forward_program, vjp_program


def package_metadata(model: Geodite, dtype: str, compute_stress: bool, kernels: str) -> dict[str, str]:
    """What a loader needs besides the functions: cutoff (Å), layers, channels, stages, max_z, dtype, stress,
    supported Z, the kernels and the package format."""
    elements = [z for z, ok in enumerate(model.supported_elements()) if ok]
    return {"cutoff": repr(float(model.cutoff)), "num_layers": str(model.config.num_layers),
            "num_channels": str(model.config.num_channels), "stages": str(model.config.num_layers + 2),
            "max_z": str(model.config.max_z), "dtype": dtype, "stress": str(int(compute_stress)),
            "elements": ",".join(map(str, elements)), "kernels": kernels, "format": str(PACKAGE_FORMAT)}


@dataclass
class ExportReport:
    path: Path
    seconds: float  # wall time of tracing, export and compilation
    size_mb: float
    cached: bool = False  # found in the cache (``seconds`` is then the original compilation's)


def export_model(model: Geodite, out: Path, dtype: str = "float64", compute_stress: bool = True,
                 kernels: str = "ops") -> ExportReport:
    """Write ``model`` as an AOTInductor package to ``out`` (.pt2) with the ``kernels`` of KERNELS: the whole
    graph (``model``) and the stages with their vector–Jacobian products. Takes minutes (C++ compilation)."""
    from torch._inductor.package import package_aoti

    out = Path(out)
    if out.suffix != ".pt2":
        raise ExportError(f"the package name must end in .pt2, not {out.name!r}")
    start = time.perf_counter()
    with quiet_compiler():
        programs = {"model": export_program(model, dtype, compute_stress, kernels)}
        for index in range(model.config.num_layers + 2):
            programs[f"stage{index}"], programs[f"stage{index}_vjp"] = stage_programs(model, index, dtype, kernels)
        options = {"aot_inductor.package": True,
                   "aot_inductor.metadata": package_metadata(model, dtype, compute_stress, kernels)}
        files = {}
        for name, program in programs.items():
            args, kwargs = program.example_inputs
            files[name] = torch._inductor.aot_compile(program.module(check_guards=False), args, kwargs,
                                                      options=dict(options))
        out.parent.mkdir(parents=True, exist_ok=True)
        package_aoti(str(out), files)
    return ExportReport(out, time.perf_counter() - start, out.stat().st_size / 1e6)


#: torch's loggers that report on its own internals while exporting and compiling (e.g. "aten._linalg_det is
#: missing a c-shim implementation, using proxy executor as fallback"); errors still raise
COMPILER_LOGGERS = ("torch._inductor", "torch._dynamo", "torch.export", "torch._export", "torch.fx")


@contextlib.contextmanager
def quiet_compiler():
    """Silence what torch says about its own internals during an export (FutureWarning / DeprecationWarning
    such as "isinstance(treespec, LeafSpec) is deprecated", and the compiler loggers' warnings): nothing a user
    of ``geodite export`` can act on. Restores the warning filters and logger levels afterwards."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in COMPILER_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def stored_metadata(path: Path) -> dict[str, str]:
    """A package's metadata read from its archive without loading it (empty if not found)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("wrapper_metadata.json"):
                return json.loads(archive.read(name))
    return {}


@dataclass(frozen=True)
class ExportedConfig:
    """The part of GeoditeConfig an Evaluator reads."""

    cutoff: float
    num_layers: int
    max_z: int


class ExportedGeodite(nn.Module):
    """A loaded ``.pt2`` package behind the eager model's interface: ``model(graph, compute_stress)``,
    ``cutoff``, ``config.max_z`` and ``supported_elements()``; so the Evaluator and the ASE calculator
    take it unchanged. Inputs are cast to the package's dtype."""

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no exported model at {path}")
        if stored_metadata(path).get("kernels") == "ops":
            load_library()  # the package calls the geodite:: operators: loading it needs them registered
        self.runner = torch._inductor.aoti_load_package(str(path))
        metadata = self.runner.get_metadata()
        missing = [key for key in METADATA_KEYS if key not in metadata]
        if missing:
            raise ExportError(f"{path} is not a Geodite package (metadata lacks {', '.join(missing)})")
        self.format = int(metadata.get("format", "1"))
        if self.format > PACKAGE_FORMAT:
            raise ExportError(f"{path} is package format {self.format}, newer than this geodite reads "
                              f"({PACKAGE_FORMAT}): update geodite")
        self.path = path
        self.dtype = DTYPES[metadata["dtype"]]
        self.has_stress = metadata["stress"] == "1"
        self.config = ExportedConfig(float(metadata["cutoff"]), int(metadata["num_layers"]), int(metadata["max_z"]))
        self.elements = {int(z) for z in metadata["elements"].split(",") if z}

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    def supported_elements(self) -> list[bool]:
        return [z in self.elements for z in range(self.config.max_z)]

    def forward(self, graph: AtomGraph, compute_stress: bool = True) -> dict[str, Tensor]:
        """The eager model's outputs: energy [B] eV, forces [N, 3] eV/Å, stress [B, 3, 3] eV/Å³, atomic_energies;
        and atomic_virials [N, 3, 3] eV from packages of format ≥ 2."""
        if compute_stress and not self.has_stress:
            raise ExportError(f"{self.path} was exported without stress")
        energy, atomic, forces, stress, *rest = self.runner(*graph_inputs(graph.to(dtype=self.dtype)))
        out = {"energy": energy, "forces": forces, "atomic_energies": atomic}
        if rest:
            out["atomic_virials"] = rest[0]
        if compute_stress:
            out["stress"] = stress
        return out


def load_exported(path: str | Path) -> ExportedGeodite:
    """Load a package written by ``export_model`` (``geodite export``)."""
    return ExportedGeodite(path)


def load_stages(path: str | Path) -> tuple[list, list]:
    """The stages of a format-5 package and their vector–Jacobian products, as callables for
    ``geodite.domains.run_domains`` (what pair_style geodite runs, here from Python)."""
    package = ExportedGeodite(path)  # checks the package and loads the kernels it calls
    if package.format < PACKAGE_FORMAT:
        raise ExportError(f"{path} is package format {package.format}, without stages that return what their "
                          f"vector–Jacobian products need (format {PACKAGE_FORMAT}): export it again with "
                          "geodite export")
    from torch._inductor.package import load_package

    count = int(package.runner.get_metadata()["stages"])
    return ([load_package(str(path), f"stage{k}") for k in range(count)],
            [load_package(str(path), f"stage{k}_vjp") for k in range(count)])


def export_key(model: Geodite, dtype: str, compute_stress: bool, kernels: str = "ops") -> str:
    """What decides a package's content: weights, config, dtype, stress, kernels, the torch version and the
    sources of the model, of this exporter and of the kernels (custom_ops.py, csrc/fused_ops.cpp)."""
    digest = hashlib.sha256(f"{torch.__version__} {dtype} {compute_stress} {kernels}".encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().double().numpy().tobytes())
    package = Path(__file__).parent
    for source in [Path(__file__), package / "graph.py", *sorted((package / "model").glob("*.py")),
                   package / "custom_ops.py", SOURCE]:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def cached_export(model: Geodite, directory: Path, name: str, dtype: str = "float64", compute_stress: bool = True,
                  kernels: str = "ops") -> ExportReport:
    """``export_model`` into ``directory``/NAME-DTYPE-KERNELS-KEY.pt2 unless that package exists already."""
    key = export_key(model, dtype, compute_stress, kernels)
    path = Path(directory) / f"{name}-{dtype}-{kernels}-{key}.pt2"
    record = path.with_suffix(".json")
    if path.exists() and record.exists():
        return ExportReport(path, json.loads(record.read_text())["seconds"], path.stat().st_size / 1e6, cached=True)
    partial = path.with_name(path.stem + ".partial.pt2")
    report = export_model(model, partial, dtype, compute_stress, kernels)
    partial.rename(path)
    record.write_text(json.dumps({"seconds": report.seconds}))
    return ExportReport(path, report.seconds, report.size_mb)
