// The edge-chunked inference kernels of geodite/model/fused.py as custom operators geodite::*, so that exported
// packages (AOTInductor) call them and C++ programs without Python (LAMMPS's pair_style geodite) run them.
// A literal translation of fused.py's InteractionMessages and RejectedInnerProduct (forward and backward block
// loops, same math, same block sizes); geodite/custom_ops.py builds this file, loads it and registers the
// autograd formulas (forward op -> backward op) and the fake (shape) kernels.
//
// Conventions (fused.py): edge e = (j -> i), sender j, receiver i; N nodes, E edges, F channels, H heads.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace {

using at::Tensor;

// fused.py edge_blocks on the CPU (the only backend registered): one block's [edges, row] temporary is ~2 MB
int64_t block_edges(int64_t row_bytes)
{
  return std::max<int64_t>(64, (int64_t{2} << 20) / std::max<int64_t>(1, row_bytes));
}

// fused.py head_columns: [H, H*width] indicator, row h is 1 on head h's contiguous columns
Tensor head_columns(int64_t num_heads, int64_t width, const Tensor &like)
{
  return at::eye(num_heads, like.options()).repeat_interleave(width, 1);
}

Tensor silu_grad(const Tensor &x)
{
  const Tensor sigmoid = at::sigmoid(x);
  return sigmoid * (1 + x * (1 - sigmoid));
}

// fused.py attention_messages: (logits [b, H], messages [b, 3F])
std::tuple<Tensor, Tensor> attention_messages(const Tensor &attention_in, const Tensor &filter_in, const Tensor &q_i,
                                              const Tensor &k_j, const Tensor &values_j, const Tensor &filters_j,
                                              int64_t num_heads)
{
  const int64_t F = q_i.size(-1);
  const Tensor logits = at::matmul(q_i * k_j * at::silu(attention_in), head_columns(num_heads, F / num_heads, q_i).t());
  const Tensor alpha = at::silu(logits) / std::sqrt(static_cast<double>(F));
  const Tensor alpha_columns = at::matmul(alpha, head_columns(num_heads, 3 * F / num_heads, alpha));
  return {logits, alpha_columns * values_j + filter_in * filters_j};
}

// fused.py steerable_messages: o_d, o_t [b, F], Y [b, 8], X_j [b, 8, F] -> [b, 8, F]
Tensor steerable_messages(const Tensor &o_d, const Tensor &o_t, const Tensor &Y, const Tensor &X_j)
{
  return at::addcmul(Y.unsqueeze(-1) * o_d.unsqueeze(1), X_j, o_t.unsqueeze(1));
}

// fused.py rejected_inner_product: a, b [b, M, C], direction [b, M] -> [b, C]
Tensor rejected_inner_product(const Tensor &a, const Tensor &b, const Tensor &direction)
{
  const Tensor y = direction.unsqueeze(-1);
  return (a * b).sum(1) - (y * a).sum(1) * (y * b).sum(1);
}

std::tuple<Tensor, Tensor> interaction_messages(const Tensor &attention_in, const Tensor &filter_in, const Tensor &Y,
                                                const Tensor &q, const Tensor &k, const Tensor &values,
                                                const Tensor &filters, const Tensor &X, const Tensor &sender,
                                                const Tensor &receiver, int64_t num_heads)
{
  const int64_t F = X.size(-1), num_edges = Y.size(0);
  Tensor dh = at::zeros({X.size(0), F}, X.options());
  Tensor dX = at::zeros_like(X);
  const int64_t size = block_edges(X.size(1) * F * X.element_size());
  for (int64_t start = 0; start < num_edges; start += size) {
    const int64_t end = std::min(start + size, num_edges);
    const Tensor s = sender.slice(0, start, end), r = receiver.slice(0, start, end);
    const auto messages = std::get<1>(attention_messages(
        attention_in.slice(0, start, end), filter_in.slice(0, start, end), q.index_select(0, r), k.index_select(0, s),
        values.index_select(0, s), filters.index_select(0, s), num_heads));
    const auto parts = messages.split(F, -1);  // o_s, o_d, o_t
    dh.index_add_(0, r, parts[0]);
    dX.index_add_(0, r, steerable_messages(parts[1], parts[2], Y.slice(0, start, end), X.index_select(0, s)));
  }
  return {dh, dX};
}

// gradients of (attention_in, filter_in, Y, q, k, values, filters, X) from those of (dh, dX)
using Gradients8 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

Gradients8 interaction_messages_backward(const Tensor &grad_h, const Tensor &grad_X,
                                         const Tensor &attention_in, const Tensor &filter_in, const Tensor &Y,
                                         const Tensor &q, const Tensor &k, const Tensor &values,
                                         const Tensor &filters, const Tensor &X, const Tensor &sender,
                                         const Tensor &receiver, int64_t num_heads)
{
  const int64_t F = X.size(-1), num_edges = Y.size(0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(F));
  const Tensor head_channels = head_columns(num_heads, F / num_heads, X);       // [H, F]
  const Tensor head_values = head_columns(num_heads, 3 * F / num_heads, X);     // [H, 3F]
  Tensor grad_q = at::zeros_like(q), grad_k = at::zeros_like(k);
  Tensor grad_values = at::zeros_like(values), grad_filters = at::zeros_like(filters), grad_x = at::zeros_like(X);
  Tensor grad_attention = at::empty_like(attention_in), grad_filter_in = at::empty_like(filter_in);
  Tensor grad_y = at::empty_like(Y);
  const int64_t size = block_edges(X.size(1) * F * X.element_size());
  for (int64_t start = 0; start < num_edges; start += size) {
    const int64_t end = std::min(start + size, num_edges);
    const Tensor s = sender.slice(0, start, end), r = receiver.slice(0, start, end);
    const Tensor a = attention_in.slice(0, start, end), y = Y.slice(0, start, end);
    const Tensor filter_in_b = filter_in.slice(0, start, end);
    const Tensor q_i = q.index_select(0, r), k_j = k.index_select(0, s);
    const Tensor v_j = values.index_select(0, s), f_j = filters.index_select(0, s), X_j = X.index_select(0, s);
    const auto [logits, messages] = attention_messages(a, filter_in_b, q_i, k_j, v_j, f_j, num_heads);
    const auto parts = messages.split(F, -1);
    const Tensor &o_d = parts[1], &o_t = parts[2];
    Tensor g_X = grad_X.index_select(0, r);  // [b, 8, F]
    grad_y.slice(0, start, end).copy_((g_X * o_d.unsqueeze(1)).sum(-1));
    const Tensor g_messages = at::cat(
        {grad_h.index_select(0, r), at::bmm(y.unsqueeze(1), g_X).squeeze(1), (g_X * X_j).sum(1)}, -1);  // [b, 3F]
    grad_x.index_add_(0, s, g_X.mul_(o_t.unsqueeze(1)));
    grad_filter_in.slice(0, start, end).copy_(g_messages * f_j);
    grad_filters.index_add_(0, s, g_messages * filter_in_b);
    const Tensor alpha = at::silu(logits) * scale;  // [b, H]
    grad_values.index_add_(0, s, at::matmul(alpha, head_values) * g_messages);
    const Tensor g_logits = at::matmul(g_messages * v_j, head_values.t()) * silu_grad(logits) * scale;  // [b, H]
    const Tensor g_logit_channels = at::matmul(g_logits, head_channels);  // [b, F]
    const Tensor silu_a = at::silu(a);
    grad_q.index_add_(0, r, g_logit_channels * k_j * silu_a);
    grad_k.index_add_(0, s, g_logit_channels * q_i * silu_a);
    grad_attention.slice(0, start, end).copy_(g_logit_channels * q_i * k_j * silu_grad(a));
  }
  return {grad_attention, grad_filter_in, grad_y, grad_q, grad_k, grad_values, grad_filters, grad_x};
}

Tensor rejected_inner_product_edges(const Tensor &Q, const Tensor &K, const Tensor &Y, const Tensor &sender,
                                    const Tensor &receiver)
{
  const int64_t num_edges = Y.size(0);
  Tensor out = at::empty({num_edges, Q.size(-1)}, Q.options());
  const int64_t size = block_edges(Q.size(1) * Q.size(2) * Q.element_size());
  for (int64_t start = 0; start < num_edges; start += size) {
    const int64_t end = std::min(start + size, num_edges);
    out.slice(0, start, end)
        .copy_(rejected_inner_product(Q.index_select(0, receiver.slice(0, start, end)),
                                      K.index_select(0, sender.slice(0, start, end)), Y.slice(0, start, end)));
  }
  return out;
}

// gradients of (Q, K, Y) from that of w [E, C]
std::tuple<Tensor, Tensor, Tensor> rejected_inner_product_edges_backward(const Tensor &grad, const Tensor &Q,
                                                                         const Tensor &K, const Tensor &Y,
                                                                         const Tensor &sender, const Tensor &receiver)
{
  const int64_t num_edges = Y.size(0);
  Tensor grad_q = at::zeros_like(Q), grad_k = at::zeros_like(K), grad_y = at::empty_like(Y);
  const int64_t size = block_edges(Q.size(1) * Q.size(2) * Q.element_size());
  for (int64_t start = 0; start < num_edges; start += size) {
    const int64_t end = std::min(start + size, num_edges);
    const Tensor r = receiver.slice(0, start, end), s = sender.slice(0, start, end);
    const Tensor q = Q.index_select(0, r), k = K.index_select(0, s);  // [b, M, C]
    const Tensor y = Y.slice(0, start, end);                          // [b, M]
    Tensor g = grad.slice(0, start, end);                             // [b, C]
    const Tensor qy = at::bmm(y.unsqueeze(1), q).squeeze(1), ky = at::bmm(y.unsqueeze(1), k).squeeze(1);
    // dw/dy_m = -(Q_m (K.y) + K_m (Q.y)), contracted with g over channels
    grad_y.slice(0, start, end).copy_(-(q * (g * ky).unsqueeze(1) + k * (g * qy).unsqueeze(1)).sum(-1));
    g = g.unsqueeze(1);
    grad_q.index_add_(0, r, g * (k - y.unsqueeze(-1) * ky.unsqueeze(1)));  // dw/dQ_m = K_m - y_m (K.y)
    grad_k.index_add_(0, s, g * (q - y.unsqueeze(-1) * qy.unsqueeze(1)));
  }
  return {grad_q, grad_k, grad_y};
}

}  // namespace

TORCH_LIBRARY(geodite, m)
{
  m.def("interaction_messages(Tensor attention_in, Tensor filter_in, Tensor Y, Tensor q, Tensor k, Tensor values, "
        "Tensor filters, Tensor X, Tensor sender, Tensor receiver, int num_heads) -> (Tensor, Tensor)");
  m.def("interaction_messages_backward(Tensor grad_h, Tensor grad_X, Tensor attention_in, Tensor filter_in, "
        "Tensor Y, Tensor q, Tensor k, Tensor values, Tensor filters, Tensor X, Tensor sender, Tensor receiver, "
        "int num_heads) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("rejected_inner_product(Tensor Q, Tensor K, Tensor Y, Tensor sender, Tensor receiver) -> Tensor");
  m.def("rejected_inner_product_backward(Tensor grad, Tensor Q, Tensor K, Tensor Y, Tensor sender, "
        "Tensor receiver) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(geodite, CPU, m)
{
  m.impl("interaction_messages", &interaction_messages);
  m.impl("interaction_messages_backward", &interaction_messages_backward);
  m.impl("rejected_inner_product", &rejected_inner_product_edges);
  m.impl("rejected_inner_product_backward", &rejected_inner_product_edges_backward);
}
