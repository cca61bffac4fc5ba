"""Edge-chunked kernels for inference (energy, forces, stress): the interaction's messages (attention,
filters, steerable aggregation) and the edge update's rejected inner products.

Written with plain autograd, these form [E, 3F] and [E, 2l+1, F] tensors (gathered node features,
per-edge products) that autograd keeps for the backward pass: at 1000 atoms and the published size each is ~280 MB, so time per atom grows with N (memory
bandwidth) and memory reaches GBs. These functions compute the same sums in blocks of edges that stay in
cache, in the forward and the backward pass, and keep only their [N, ·] and [E, ·] inputs for backward.

They are differentiable once (forces and stress); training, which differentiates the forces again, uses
the plain path (``Geodite.train()`` switches it). Both paths give the same numbers up to float rounding.

This file is the readable reference. The entry points (``interaction_messages``, ``interaction_messages_t``,
``edge_gate_update``, ``rejected_inner_product_edges``) run, where ``geodite.custom_ops.use_operators`` says so
(by default on the CPU), the hand-written C++ kernels of ``geodite/csrc/fused_ops.cpp`` instead
(``torch.ops.geodite``: the same sums, per destination atom, vectorised and threaded), which ``geodite export``
and LAMMPS run too; the tests hold them equal to the Functions below in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from geodite.custom_ops import use_operators

#: bytes of one block's [edges, 8, F] temporary: fits the L2/L3 cache of a CPU core; large on GPUs, where
#: the blocks only bound memory.
BLOCK_BYTES = {"cpu": 2 << 20, "cuda": 512 << 20}


#: bytes of an [E, F] edge tensor up to which inference keeps the layers' per-edge intermediates (W_r t, W_s t,
#: the edge update's MLP and norm) for the backward pass; beyond, the backward pass recomputes them from t and w
#: (``interaction_messages_t``, ``edge_gate_update``): memory then grows by ~3 [E, F] tensors per layer instead
#: of ~12, for ~25 % more matrix-product work. 64 MB: F = 192 in float32 at ~87,000 edges (~1,900 atoms of Si).
KEEP_EDGE_BYTES = 64 << 20


#: whether float32 products of per-edge tensors with constant weights (``edge_linear``, ``edge_product``) run
#: oneDNN's matrix product instead of ATen's (MKL's) where torch has oneDNN: on this project's AVX-512 CPU
#: ~190-210 GFLOP/s against ~145-180 for [~10⁴, 192] × [192, 192 or 576] (docs/speed.md, session 10). False
#: runs ATen's everywhere (an A/B switch for benchmarks).
ONEDNN_EDGE_PRODUCTS = True

#: fewest rows (edges) for which ``edge_product`` runs oneDNN: below, its per-call cost outweighs the faster
#: product (8-atom Si, ~370 edges: 2 % slower per call; 64 atoms, ~2,900 edges: 5 % faster; docs/speed.md).
ONEDNN_MIN_ROWS = 1024


def _onednn(x: Tensor) -> bool:
    """Whether ``edge_product`` of ``x`` runs oneDNN: float32 on the CPU, at least ONEDNN_MIN_ROWS rows, eager
    with concrete sizes (a trace, torch.compile or export, records ATen's product), torch built with oneDNN."""
    return (ONEDNN_EDGE_PRODUCTS and x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() == 2
            and not isinstance(x.shape[0], torch.SymInt) and x.shape[0] >= ONEDNN_MIN_ROWS
            and not torch.compiler.is_compiling() and torch.backends.mkldnn.is_available())


def edge_product(x: Tensor, weight: Tensor) -> Tensor:
    """x Wᵀ without autograd: x [E, K], W [M, K] -> [E, M] (oneDNN's product where ``_onednn`` says so, the same
    sums up to float32 rounding)."""
    if _onednn(x):  # W as it is: a transposed view costs no copy (oneDNN reads its strides)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, None, "none", [], "")
    return torch.nn.functional.linear(x, weight)


class EdgeLinear(torch.autograd.Function):
    """x Wᵀ with ``edge_product`` forward and backward (∂/∂x = grad W); W is a constant (inference)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(weight)
        return edge_product(x, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (weight,) = ctx.saved_tensors
        return edge_product(grad, weight.t()), None


def edge_linear(x: Tensor, weight: Tensor) -> Tensor:
    """x Wᵀ for a per-edge tensor x [E, K] and a constant W [M, K] in inference (forces and stress differentiate
    it once): ``EdgeLinear`` where ``_onednn`` says so, else ``F.linear``. Pass W detached."""
    if _onednn(x):
        return EdgeLinear.apply(x, weight)
    return torch.nn.functional.linear(x, weight)


def recompute_edges(num_edges: int, like: Tensor) -> bool:
    """Whether inference recomputes per-edge intermediates in the backward pass: [num_edges, F] tensors of the
    width and dtype of ``like`` [·, F] beyond KEEP_EDGE_BYTES. Never while tracing with symbolic sizes
    (torch.compile, export): those graphs keep them."""
    if isinstance(num_edges, torch.SymInt):
        return False
    return num_edges * like.shape[-1] * like.element_size() > KEEP_EDGE_BYTES


def edge_blocks(num_edges: int, row_bytes: int, device: torch.device) -> list[slice]:
    """Contiguous slices of the edges such that one block's [edges, row] temporary is ~BLOCK_BYTES."""
    size = max(64, BLOCK_BYTES.get(device.type, BLOCK_BYTES["cuda"]) // max(1, row_bytes))
    return [slice(start, min(start + size, num_edges)) for start in range(0, num_edges, size)]


def head_columns(num_heads: int, width: int, like: Tensor) -> Tensor:
    """[H, H·width] indicator matrix: row h is 1 on head h's ``width`` contiguous columns, 0 elsewhere.

    ``x @ head_columns(H, w)`` repeats a per-head value [·, H] over its columns [·, H·w], and
    ``y @ head_columns(H, w).T`` sums the columns of each head [·, H]; both exact (products with 1 and 0).
    Written as matrix products, per-head weights never go through a [·, H, w] view of a wider tensor:
    torch 2.13's CPU Inductor mis-indexes such a view when a later column slice crosses a head boundary
    (4 heads of 16 channels: part of the scalar messages was dropped, 0.04 eV on 8 atoms of NaCl).
    """
    return torch.eye(num_heads, dtype=like.dtype, device=like.device).repeat_interleave(width, dim=1)


def attention_messages(attention_in: Tensor, filter_in: Tensor, q_i: Tensor, k_j: Tensor, values_j: Tensor,
                       filters_j: Tensor, num_heads: int, dropout=None) -> tuple[Tensor, Tensor]:
    """Attention logits [E, H] and messages o_ij = α_ij·γ_v(h_j) + (W_s t_ij) ⊙ γ_s(h_j) [E, 3F].

    ℓ = Σ_head-channels q_i k_j SiLU(W_r t), α = SiLU(ℓ)/√F (no softmax); attention_in = W_r t [E, F],
    filter_in = W_s t [E, 3F], q_i, k_j [E, F] (head h owns channels [hC, (h+1)C)), values_j, filters_j
    [E, 3F]. Each head owns a contiguous 3F/H slice of the values. ``dropout`` (training only) acts on α.
    """
    F_ = q_i.shape[-1]
    logits = (q_i * k_j * torch.nn.functional.silu(attention_in)) @ head_columns(num_heads, F_ // num_heads, q_i).T
    alpha = torch.nn.functional.silu(logits) / math.sqrt(F_)
    if dropout is not None:
        alpha = dropout(alpha)
    alpha_columns = alpha @ head_columns(num_heads, 3 * F_ // num_heads, alpha)  # [E, 3F]
    return logits, alpha_columns * values_j + filter_in * filters_j


def steerable_messages(o_d: Tensor, o_t: Tensor, Y: Tensor, X_j: Tensor) -> Tensor:
    """Per-edge steerable message o^d ⊗ Y + o^t ⊙ X_j: o_d, o_t [E, F], Y [E, 8], X_j [E, 8, F] -> [E, 8, F]."""
    return torch.addcmul(Y.unsqueeze(-1) * o_d.unsqueeze(1), X_j, o_t.unsqueeze(1))


def rejected_inner_product(a: Tensor, b: Tensor, direction: Tensor) -> Tensor:
    """⟨a ⊥ ŷ, b ⊥ ŷ⟩ over m, per channel, where x ⊥ ŷ = x − (x·ŷ) ŷ removes the component along ŷ.

    Since P = 1 − ŷŷᵀ is a projector, ⟨Pa, Pb⟩ = a·b − (a·ŷ)(b·ŷ): no rejected copies are formed.
    a, b [E, M, C], direction [E, M] (unit norm over M) -> [E, C].
    """
    y = direction.unsqueeze(-1)  # [E, M, 1]; elementwise, not bmm: M ≤ 5 is too short for a batched matmul
    return (a * b).sum(dim=1) - (y * a).sum(dim=1) * (y * b).sum(dim=1)


def _silu_grad(x: Tensor) -> Tensor:
    """d SiLU(x)/dx = σ(x)(1 + x(1 − σ(x)))."""
    sigmoid = torch.sigmoid(x)
    return sigmoid * (1 + x * (1 - sigmoid))


class InteractionMessages(torch.autograd.Function):
    """(Δh_i, ΔX_i) = Σ_{e=(j→i)} (o^s_e, o^d_e ⊗ Y_e + o^t_e ⊙ X_j), [o^s, o^d, o^t] = attention_messages(e).

    Inputs: attention_in [E, F], filter_in [E, 3F], Y [E, 8], and node tensors q, k [N, F], values,
    filters [N, 3F], X [N, 8, F], gathered per edge block (q at the receiver, the others at the sender);
    ``num_heads`` H divides F.
    The backward pass recomputes each block's messages and applies the chain rule by hand.
    """

    @staticmethod
    def forward(ctx, attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver, num_heads):
        ctx.save_for_backward(attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver)
        ctx.num_heads = num_heads
        F_ = X.shape[-1]
        dh = X.new_zeros((X.shape[0], F_))
        dX = torch.zeros_like(X)
        for block in edge_blocks(Y.shape[0], X[0].numel() * X.element_size(), X.device):
            s, r = sender[block], receiver[block]
            _, messages = attention_messages(attention_in[block], filter_in[block], q.index_select(0, r),
                                             k.index_select(0, s), values.index_select(0, s), filters.index_select(0, s),
                                             num_heads)
            o_s, o_d, o_t = messages.split(F_, dim=-1)
            dh.index_add_(0, r, o_s)
            dX.index_add_(0, r, steerable_messages(o_d, o_t, Y[block], X.index_select(0, s)))
        return dh, dX

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor, grad_X: Tensor):
        attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver = ctx.saved_tensors
        F_ = X.shape[-1]
        head_channels = head_columns(ctx.num_heads, F_ // ctx.num_heads, X)  # [H, F]
        head_values = head_columns(ctx.num_heads, 3 * F_ // ctx.num_heads, X)  # [H, 3F]
        grad_q, grad_k = torch.zeros_like(q), torch.zeros_like(k)
        grad_values, grad_filters, grad_x = torch.zeros_like(values), torch.zeros_like(filters), torch.zeros_like(X)
        grad_attention, grad_filter_in, grad_y = (torch.empty_like(x) for x in (attention_in, filter_in, Y))
        for block in edge_blocks(Y.shape[0], X[0].numel() * X.element_size(), X.device):
            s, r = sender[block], receiver[block]
            a, y, filter_in_b = attention_in[block], Y[block], filter_in[block]
            q_i, k_j = q.index_select(0, r), k.index_select(0, s)
            v_j, f_j, X_j = values.index_select(0, s), filters.index_select(0, s), X.index_select(0, s)
            logits, messages = attention_messages(a, filter_in_b, q_i, k_j, v_j, f_j, ctx.num_heads)
            _, o_d, o_t = messages.split(F_, dim=-1)
            g_X = grad_X.index_select(0, r)  # [b, 8, F]
            grad_y[block] = (g_X * o_d.unsqueeze(1)).sum(dim=-1)
            g_messages = torch.cat(
                [grad_h.index_select(0, r), torch.bmm(y.unsqueeze(1), g_X).squeeze(1), (g_X * X_j).sum(dim=1)], dim=-1
            )  # [b, 3F]
            grad_x.index_add_(0, s, g_X.mul_(o_t.unsqueeze(1)))
            grad_filter_in[block] = g_messages * f_j
            grad_filters.index_add_(0, s, g_messages * filter_in_b)
            alpha = torch.nn.functional.silu(logits) / math.sqrt(F_)  # [b, H]
            grad_values.index_add_(0, s, (alpha @ head_values) * g_messages)
            g_logits = ((g_messages * v_j) @ head_values.T) * _silu_grad(logits) / math.sqrt(F_)  # [b, H]
            g_logit_channels = g_logits @ head_channels  # [b, F]
            silu_a = torch.nn.functional.silu(a)
            grad_q.index_add_(0, r, g_logit_channels * k_j * silu_a)
            grad_k.index_add_(0, s, g_logit_channels * q_i * silu_a)
            grad_attention[block] = g_logit_channels * q_i * k_j * _silu_grad(a)
        return (grad_attention, grad_filter_in, grad_y, grad_q, grad_k, grad_values, grad_filters, grad_x, None, None,
                None)


class RejectedInnerProduct(torch.autograd.Function):
    """w_e = ⟨Q_i ⊥ ŷ_e, K_j ⊥ ŷ_e⟩ = Σ_m Q_im K_jm − (Q_i·ŷ_e)(K_j·ŷ_e) per channel, e = (j → i).

    Q, K [N, M, C] node features, Y [E, M] unit direction harmonics -> w [E, C].
    """

    @staticmethod
    def forward(ctx, Q: Tensor, K: Tensor, Y: Tensor, sender: Tensor, receiver: Tensor) -> Tensor:
        ctx.save_for_backward(Q, K, Y, sender, receiver)
        out = Q.new_empty((Y.shape[0], Q.shape[-1]))
        for block in edge_blocks(Y.shape[0], Q[0].numel() * Q.element_size(), Q.device):
            out[block] = rejected_inner_product(Q.index_select(0, receiver[block]), K.index_select(0, sender[block]),
                                                Y[block])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        Q, K, Y, sender, receiver = ctx.saved_tensors
        need_q, need_k, need_y = ctx.needs_input_grad[:3]
        grad_q = torch.zeros_like(Q) if need_q else None
        grad_k = torch.zeros_like(K) if need_k else None
        grad_y = torch.empty_like(Y) if need_y else None
        for block in edge_blocks(Y.shape[0], Q[0].numel() * Q.element_size(), Q.device):
            q = Q.index_select(0, receiver[block])  # [b, M, C]
            k = K.index_select(0, sender[block])
            y = Y[block]  # [b, M]
            g = grad[block]  # [b, C]
            qy = torch.bmm(y.unsqueeze(1), q).squeeze(1)  # [b, C]
            ky = torch.bmm(y.unsqueeze(1), k).squeeze(1)
            if need_y:
                # ∂w/∂y_m = −(Q_m (K·ŷ) + K_m (Q·ŷ)), contracted with g over channels
                grad_y[block] = -(q * (g * ky).unsqueeze(1) + k * (g * qy).unsqueeze(1)).sum(dim=-1)
            g = g.unsqueeze(1)
            if need_q:
                # ∂w/∂Q_m = K_m − ŷ_m (K·ŷ)
                grad_q.index_add_(0, receiver[block], g * (k - y.unsqueeze(-1) * ky.unsqueeze(1)))
            if need_k:
                grad_k.index_add_(0, sender[block], g * (q - y.unsqueeze(-1) * qy.unsqueeze(1)))
        return grad_q, grad_k, grad_y, None, None


class EdgeGateUpdate(torch.autograd.Function):
    """The edge update t' = t + SiLU(W₂ SiLU(W₁ t)) ⊙ W_e LayerNorm(w) (t [E, F], w [E, Fe]) in blocks of edges.

    Autograd would keep five [E, F] tensors per layer for the backward pass (w, W₁t, W₂SiLU(W₁t), the gate and
    W_e LayerNorm(w)); this keeps t and w only (t is kept for the interaction's backward pass anyway) and the
    backward pass recomputes the rest block by block, then applies the chain rule. Gradients for t and w only
    (inference: the weights are constants here).
    """

    @staticmethod
    def forward(ctx, t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps):
        ctx.save_for_backward(t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias)
        ctx.eps = eps
        out = torch.empty_like(t)
        for block in edge_blocks(t.shape[0], t.shape[1] * t.element_size(), t.device):
            gate = torch.nn.functional.silu(edge_product(
                torch.nn.functional.silu(edge_product(t[block], weight_in)), weight_out))
            normed = torch.nn.functional.layer_norm(w[block], (w.shape[1],), norm_weight, norm_bias, eps)
            torch.addcmul(t[block], gate, edge_product(normed, weight_e), out=out[block])  # in place: no copy
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias = ctx.saved_tensors
        grad_t, grad_w = torch.empty_like(t), torch.empty_like(w)
        for block in edge_blocks(t.shape[0], t.shape[1] * t.element_size(), t.device):
            g = grad[block]
            pre_hidden = edge_product(t[block], weight_in)
            pre_gate = edge_product(torch.nn.functional.silu(pre_hidden), weight_out)
            normed, mean, rstd = torch.native_layer_norm(w[block], [w.shape[1]], norm_weight, norm_bias, ctx.eps)
            update = edge_product(normed, weight_e)
            grad_normed = edge_product(g * torch.nn.functional.silu(pre_gate), weight_e.t())
            grad_w[block] = torch.ops.aten.native_layer_norm_backward(
                grad_normed, w[block], [w.shape[1]], mean, rstd, norm_weight, norm_bias, [True, False, False])[0]
            grad_hidden = edge_product(g * update * _silu_grad(pre_gate), weight_out.t()) * _silu_grad(pre_hidden)
            torch.add(g, edge_product(grad_hidden, weight_in.t()), out=grad_t[block])
        return grad_t, grad_w, None, None, None, None, None, None


def _edge_nodes(nodes: Tensor, sender: Tensor, receiver: Tensor, pair: bool) -> Tensor:
    """nodes_j, or nodes_i + nodes_j with ``pair``, per edge e = (j → i): [E, F]."""
    gathered = nodes.index_select(0, sender)
    return gathered + nodes.index_select(0, receiver) if pair else gathered


class RadialEdgeProduct(torch.autograd.Function):
    """x_e = n_e ⊙ (W φ_e) per edge e = (j → i), n_e = a_j (or a_i + a_j with ``pair``): a [N, F], φ [E, n_rbf],
    W [F, n_rbf] -> [E, F] (the embeddings' products). Autograd would keep both [E, F] factors; this keeps a and φ
    and regathers / recomputes them in the backward pass (n_rbf ≪ F: cheap). No gradient for W (inference)."""

    @staticmethod
    def forward(ctx, nodes, phi, weight, sender, receiver, pair):
        ctx.save_for_backward(nodes, phi, weight, sender, receiver)
        ctx.pair = pair
        return _edge_nodes(nodes, sender, receiver, pair) * torch.nn.functional.linear(phi, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        nodes, phi, weight, sender, receiver = ctx.saved_tensors
        grad_nodes = grad_phi = None
        if ctx.needs_input_grad[0]:
            grad_edges = grad * torch.nn.functional.linear(phi, weight)
            grad_nodes = torch.zeros_like(nodes).index_add_(0, sender, grad_edges)
            if ctx.pair:
                grad_nodes.index_add_(0, receiver, grad_edges)
        if ctx.needs_input_grad[1]:
            grad_phi = (grad * _edge_nodes(nodes, sender, receiver, ctx.pair)) @ weight
        return grad_nodes, grad_phi, None, None, None, None


def radial_edge_product(nodes: Tensor, phi: Tensor, weight: Tensor, sender: Tensor, receiver: Tensor,
                        pair: bool) -> Tensor:
    """n_e ⊙ (W φ_e) for inference (RadialEdgeProduct where ``recompute_edges`` says so; W detached)."""
    weight = weight.detach()
    if not recompute_edges(sender.shape[0], nodes):
        return _edge_nodes(nodes, sender, receiver, pair) * torch.nn.functional.linear(phi, weight)
    return RadialEdgeProduct.apply(nodes, phi, weight, sender, receiver, pair)


def interaction_messages(attention_in: Tensor, filter_in: Tensor, Y: Tensor, q: Tensor, k: Tensor, values: Tensor,
                         filters: Tensor, X: Tensor, sender: Tensor, receiver: Tensor,
                         num_heads: int) -> tuple[Tensor, Tensor]:
    """(Δh [N, F], ΔX [N, 8, F]) of an interaction block (see InteractionMessages); the C++ operator where
    ``use_operators`` says so."""
    if use_operators(X.device):
        return torch.ops.geodite.interaction_messages(attention_in, filter_in, Y, q, k, values, filters, X, sender,
                                                      receiver, num_heads)
    return InteractionMessages.apply(attention_in, filter_in, Y, q, k, values, filters, X, sender, receiver, num_heads)


def interaction_messages_t(t: Tensor, weight_r: Tensor, weight_s: Tensor, Y: Tensor, q: Tensor, k: Tensor,
                           values: Tensor, filters: Tensor, X: Tensor, sender: Tensor, receiver: Tensor,
                           num_heads: int) -> tuple[Tensor, Tensor]:
    """``interaction_messages`` of attention_in = t W_rᵀ and filter_in = t W_sᵀ (t [E, F], W_r [F, F], W_s [3F, F]).

    For inference: the weights are detached (gradients reach t, Y and the node tensors). Where
    ``recompute_edges`` and ``use_operators`` say so, the C++ operator makes the two per chunk of edges, in the
    forward pass and again in the backward pass, so that autograd keeps t [E, F] instead of [E, F] and [E, 3F]
    tensors; otherwise the two linear maps (``edge_linear``) and ``interaction_messages``.
    """
    weight_r, weight_s = weight_r.detach(), weight_s.detach()
    if recompute_edges(t.shape[0], t) and use_operators(X.device):
        return torch.ops.geodite.interaction_messages_t(t, weight_r, weight_s, Y, q, k, values, filters, X, sender,
                                                        receiver, num_heads)
    return interaction_messages(edge_linear(t, weight_r), edge_linear(t, weight_s), Y, q, k, values, filters, X,
                                sender, receiver, num_heads)


def edge_gate_update(t: Tensor, w: Tensor, weight_in: Tensor, weight_out: Tensor, weight_e: Tensor,
                     norm_weight: Tensor, norm_bias: Tensor, eps: float) -> Tensor:
    """t + SiLU(W_out SiLU(W_in t)) ⊙ W_e LayerNorm(w) for inference (the weights detached): the C++ operator where
    ``use_operators`` says so (keeping its intermediates for the backward pass unless ``recompute_edges``);
    otherwise EdgeGateUpdate where ``recompute_edges``, else the plain expression."""
    weights = [x.detach() for x in (weight_in, weight_out, weight_e, norm_weight, norm_bias)]
    if use_operators(t.device):
        return torch.ops.geodite.edge_gate_update(t, w, *weights, eps, not recompute_edges(t.shape[0], t))[0]
    if not recompute_edges(t.shape[0], t):
        weight_in, weight_out, weight_e, norm_weight, norm_bias = weights
        silu = torch.nn.functional.silu
        gate = silu(edge_linear(silu(edge_linear(t, weight_in)), weight_out))
        return t + gate * edge_linear(torch.nn.functional.layer_norm(w, (w.shape[1],), norm_weight, norm_bias, eps),
                                      weight_e)
    return EdgeGateUpdate.apply(t, w, *weights, eps)


def rejected_inner_product_edges(Q: Tensor, K: Tensor, Y: Tensor, sender: Tensor, receiver: Tensor) -> Tensor:
    """⟨Q_receiver ⊥ Y, K_sender ⊥ Y⟩ per edge and channel: [E, C] (RejectedInnerProduct, or its C++ operator)."""
    if use_operators(Q.device):
        return torch.ops.geodite.rejected_inner_product(Q, K, Y, sender, receiver)
    return RejectedInnerProduct.apply(Q, K, Y, sender, receiver)
