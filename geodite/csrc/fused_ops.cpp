// Geodite's inference kernels as custom operators geodite::* (CPU): the interaction's attention messages and
// steerable aggregation, the edge update's rejected inner products and its gate, forward and backward (energy ->
// forces, stress). One source for eager inference (geodite/model/fused.py's entry points call them), exported
// packages (AOTInductor calls the operators by name) and C++ programs without Python (LAMMPS's pair_style geodite
// links this library).
// geodite/model/fused.py is the readable reference: same sums (up to the order of float additions), tested
// against it in float64; geodite/custom_ops.py builds this file, loads it and registers the autograd formulas
// (forward op -> backward op) and the fake (shape) kernels.
//
// Conventions (fused.py): edge e = (j -> i), sender j, receiver i; N nodes, E edges, F channels, H heads of
// C = F/H channels; a head owns 3C contiguous columns of the 3F values [o_s | o_d | o_t].
//
// How: each operator is one or two passes over destination rows (atoms in the order of their incoming or
// outgoing edges, a counting sort of the edge index), split over torch's threads (at::parallel_for). A row is
// summed by one thread over its edges in edge order, so results do not depend on the number of threads. Per
// edge, everything (silu, per-head logits, messages, gradients) is computed in a few registers-to-L1 loops
// over channels, with no tensor allocated; per-thread scratch rows and the sort's arrays are thread_local
// vectors kept across calls. The loops are written for the compiler's auto-vectorisation and compiled three
// times (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline), picked at load time by the CPU (target_clones), so the
// library runs on any x86-64 CPU whatever machine built it.

#include <ATen/ATen.h>
#include <ATen/Config.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#if AT_MKLDNN_ENABLED() && defined(__x86_64__)
#define GEODITE_ONEDNN 1
namespace at::native {
// result = beta result + alpha mat1 mat2 on oneDNN: ATen/native/mkldnn/Matmul.h, which torch's wheel does not ship
// (libtorch_cpu exports it; ATen's bf16/fp16 matrix products call it)
TORCH_API void mkldnn_matmul(const Tensor &mat1, const Tensor &mat2, const Tensor &result, float beta, float alpha);
}  // namespace at::native
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__) && !defined(__INTEL_COMPILER)
#define GEODITE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GEODITE_CLONES
#endif
#define GEODITE_INLINE inline __attribute__((always_inline))

namespace {

using at::Tensor;

// ---------------------------------------------------------------------------------------------------------------
// exp, sigmoid, silu written so that loops over channels vectorise (libm's exp does not): 2^n · p(r) with
// x = n ln2 + r, |r| <= ln2/2, p the Taylor polynomial of degree 13 (double) or 7 (float), truncation error
// below 1e-17 and 6e-9 relative (under one ulp); 2^n is built in the exponent bits. x is clamped to where 2^n
// is a normal number, which only matters where silu's or sigmoid's value is below the type's resolution.

template <typename T>
struct ExpTraits;

template <>
struct ExpTraits<double> {
  using Bits = uint64_t;
  static constexpr double limit = 708.0, magic = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to integer
  static constexpr int mantissa = 52, bias = 1023, degree = 13;
};

template <>
struct ExpTraits<float> {
  using Bits = uint32_t;
  static constexpr float limit = 87.0f, magic = 12582912.0f;  // 1.5 * 2^23
  static constexpr int mantissa = 23, bias = 127, degree = 7;
};

constexpr double inverse_factorial(int k)
{
  double value = 1.0;
  for (int i = 2; i <= k; ++i) value /= i;
  return value;
}

// Σ_{k=K..D} r^(k-K)/k!, by Horner's rule, unrolled at compile time (a loop here stops the vectoriser)
template <typename T, int K, int D>
GEODITE_INLINE T taylor_tail(T r)
{
  constexpr T coefficient = T(inverse_factorial(K));
  if constexpr (K == D)
    return coefficient;
  else
    return coefficient + r * taylor_tail<T, K + 1, D>(r);
}

template <typename T>
GEODITE_INLINE T fast_exp(T x)
{
  using Traits = ExpTraits<T>;
  using Bits = typename Traits::Bits;
  constexpr T log2e = T(1.4426950408889634), ln2_hi = T(0.693145751953125), ln2_lo = T(1.4286068203094173e-06);
  x += T(x < -Traits::limit) * (-Traits::limit - x);  // clamped without a branch (vectorises on AVX2 too)
  x += T(x > Traits::limit) * (Traits::limit - x);
  const T shifted = x * log2e + Traits::magic;
  const T n = shifted - Traits::magic;
  const T r = (x - n * ln2_hi) - n * ln2_lo;
  const T p = taylor_tail<T, 0, Traits::degree>(r);
  Bits bits;
  std::memcpy(&bits, &shifted, sizeof(T));
  bits = (bits + Bits(Traits::bias)) << Traits::mantissa;  // low bits of `shifted` hold n (two's complement)
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}

template <typename T>
GEODITE_INLINE T sigmoid(T x)
{
  return T(1) / (T(1) + fast_exp(-x));
}

// d silu(x)/dx from sigmoid s = σ(x): s (1 + x (1 - s))
template <typename T>
GEODITE_INLINE T silu_grad(T x, T s)
{
  return s * (T(1) + x * (T(1) - s));
}

// ---------------------------------------------------------------------------------------------------------------
// Edges grouped by destination row: edges of row n are order[offsets[n] .. offsets[n + 1]), ascending; `rows`
// lists the rows that have edges, ascending (the rows that threads split: a chunk of edges may reach few rows).

struct RowEdges {
  std::vector<int64_t> offsets, order, rows;

  void build(const int64_t *index, int64_t num_edges, int64_t num_rows)
  {
    offsets.assign(num_rows + 1, 0);
    for (int64_t e = 0; e < num_edges; ++e) ++offsets[index[e] + 1];  // indices checked by long_index
    for (int64_t n = 0; n < num_rows; ++n) offsets[n + 1] += offsets[n];
    order.resize(num_edges);
    std::vector<int64_t> &next = cursor;
    next.assign(offsets.begin(), offsets.end() - 1);
    for (int64_t e = 0; e < num_edges; ++e) order[next[index[e]]++] = e;
    rows.clear();
    for (int64_t n = 0; n < num_rows; ++n)
      if (offsets[n + 1] > offsets[n]) rows.push_back(n);
  }

 private:
  std::vector<int64_t> cursor;
};

// Ask for `count` elements from `row` in cache ahead of use (the next edge's rows, while this edge computes):
// edges visited in the other end's order read their [E, ·] rows out of order, which the hardware does not
// prefetch. `write`: the row is about to be written.
template <typename T>
GEODITE_INLINE void prefetch(const T *row, int64_t count, bool write = false)
{
  const char *begin = reinterpret_cast<const char *>(row);
  const char *end = reinterpret_cast<const char *>(row + count);
  if (write)
    for (const char *line = begin; line < end; line += 64) __builtin_prefetch(line, 1, 3);
  else
    for (const char *line = begin; line < end; line += 64) __builtin_prefetch(line, 0, 3);
}

// per-thread scratch rows, kept across calls (grown, never shrunk)
template <typename T>
T *scratch(size_t size)
{
  thread_local std::vector<T> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// int64, contiguous, every entry in [0, num_rows)
Tensor long_index(const Tensor &index, int64_t num_rows)
{
  Tensor out = index.scalar_type() == at::kLong ? index.contiguous() : index.to(at::kLong).contiguous();
  const int64_t *data = out.data_ptr<int64_t>();
  for (int64_t e = 0; e < out.numel(); ++e)
    TORCH_CHECK(data[e] >= 0 && data[e] < num_rows, "geodite: edge index ", data[e], " out of range for ",
                num_rows, " atoms");
  return out;
}

// grain (rows per task) of at::parallel_for, so that a task has at least ~32 edges' work
int64_t row_grain(int64_t num_edges, int64_t num_rows)
{
  return std::max<int64_t>(1, 32 * num_rows / std::max<int64_t>(1, num_edges));
}

// ---------------------------------------------------------------------------------------------------------------
// Per-edge pieces of the interaction (fused.py attention_messages): sizes are F channels, H heads, C = F/H.

struct Shape {
  int64_t F, H, C;
};

// sa = silu(a), and when `ds` is given, ds = silu'(a); logits[h] = Σ_{c in h} q k sa
template <typename T>
GEODITE_INLINE void edge_logits(const Shape &s, const T *__restrict a, const T *__restrict q, const T *__restrict k,
                                T *__restrict sa, T *__restrict ds, T *__restrict logits)
{
  if (ds != nullptr) {
#pragma omp simd
    for (int64_t c = 0; c < s.F; ++c) {
      const T sig = sigmoid(a[c]);
      sa[c] = a[c] * sig;
      ds[c] = silu_grad(a[c], sig);
    }
  } else {
#pragma omp simd
    for (int64_t c = 0; c < s.F; ++c) sa[c] = a[c] * sigmoid(a[c]);
  }
  for (int64_t h = 0; h < s.H; ++h) {
    T sum = 0;
    const int64_t c0 = h * s.C;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = c0; c < c0 + s.C; ++c) sum += q[c] * k[c] * sa[c];
    logits[h] = sum;
  }
}

// messages o[c'] = α_head(c') v[c'] + fi[c'] f[c'] for c' in [from, 3F)
template <typename T>
GEODITE_INLINE void edge_messages(const Shape &s, const T *__restrict alpha, const T *__restrict v,
                                  const T *__restrict fi, const T *__restrict f, int64_t from, T *__restrict o)
{
  const int64_t width = 3 * s.C;
  for (int64_t h = from / width; h < s.H; ++h) {
    const T a = alpha[h];
    const int64_t begin = std::max(from, h * width), end = (h + 1) * width;
#pragma omp simd
    for (int64_t c = begin; c < end; ++c) o[c] = a * v[c] + fi[c] * f[c];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// geodite::interaction_messages: rows are receivers i; dh_i = Σ o_s, dX_i[m] = Σ Y_m o_d + o_t X_j[m]

struct InteractionArgs {
  Shape s;
  const int64_t *sender, *receiver, *offsets, *order, *rows;  // rows: RowEdges::rows, which threads split
  double scale;  // 1/√F

  // one past the last position in `order` of rows[begin .. end)
  int64_t last(int64_t end) const { return offsets[rows[end - 1] + 1]; }
};

template <typename T>
GEODITE_INLINE void interaction_forward_rows(const InteractionArgs &g, const T *attention_in, const T *filter_in,
                                             const T *Y, const T *q, const T *k, const T *values, const T *filters,
                                             const T *X, T *dh, T *dX, int64_t begin, int64_t end)
{
  const Shape s = g.s;
  const int64_t F = s.F, F3 = 3 * F;
  T *buffer = scratch<T>(5 * F + 2 * s.H);
  T *sa = buffer, *o = buffer + F, *logits = buffer + 4 * F, *alpha = logits + s.H;
  const T scale = T(g.scale);
  const int64_t last = g.last(end);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t i = g.rows[r];
    T *__restrict dh_i = dh + i * F;
    T *__restrict dX_i = dX + i * 8 * F;
    for (int64_t n = g.offsets[i]; n < g.offsets[i + 1]; ++n) {
      const int64_t e = g.order[n], j = g.sender[e];
      if (n + 1 < last) {
        const int64_t next = g.order[n + 1], j_next = g.sender[next];
        prefetch(attention_in + next * F, F);
        prefetch(filter_in + next * F3, F3);
        prefetch(k + j_next * F, F);
        prefetch(values + j_next * F3, F3);
        prefetch(filters + j_next * F3, F3);
        prefetch(X + j_next * 8 * F, 8 * F);
      }
      edge_logits<T>(s, attention_in + e * F, q + i * F, k + j * F, sa, nullptr, logits);
      for (int64_t h = 0; h < s.H; ++h) alpha[h] = logits[h] * sigmoid(logits[h]) * scale;
      edge_messages<T>(s, alpha, values + j * F3, filter_in + e * F3, filters + j * F3, 0, o);
      const T *__restrict o_d = o + F, *__restrict o_t = o + 2 * F;
      const T *__restrict y = Y + e * 8;
      const T *__restrict X_j = X + j * 8 * F;
#pragma omp simd
      for (int64_t c = 0; c < F; ++c) dh_i[c] += o[c];
      for (int64_t m = 0; m < 8; ++m) {
        const T y_m = y[m];
#pragma omp simd
        for (int64_t c = 0; c < F; ++c) dX_i[m * F + c] += y_m * o_d[c] + o_t[c] * X_j[m * F + c];
      }
    }
  }
}

// Backward, rows = senders j: every gradient but grad_q; g_logits [E, H] (∂/∂logits) kept for the second pass.
template <typename T>
GEODITE_INLINE void interaction_backward_senders(const InteractionArgs &g, const T *grad_h, const T *grad_X,
                                                 const T *attention_in, const T *filter_in, const T *Y, const T *q,
                                                 const T *k, const T *values, const T *filters, const T *X,
                                                 T *grad_attention, T *grad_filter_in, T *grad_y, T *grad_k,
                                                 T *grad_values, T *grad_filters, T *grad_x, T *g_logits,
                                                 int64_t begin, int64_t end)
{
  const Shape s = g.s;
  const int64_t F = s.F, F3 = 3 * F, H = s.H;
  T *buffer = scratch<T>(8 * F + 3 * H);
  T *sa = buffer, *ds = sa + F, *o = ds + F, *gm = o + 3 * F, *logits = gm + 3 * F, *alpha = logits + H,
    *g_logit = alpha + H;
  const T scale = T(g.scale);
  const int64_t last = g.last(end);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t j = g.rows[r];
    for (int64_t n = g.offsets[j]; n < g.offsets[j + 1]; ++n) {
      const int64_t e = g.order[n], i = g.receiver[e];
      if (n + 1 < last) {
        const int64_t next = g.order[n + 1], i_next = g.receiver[next];
        prefetch(attention_in + next * F, F);
        prefetch(filter_in + next * F3, F3);
        prefetch(grad_attention + next * F, F, true);
        prefetch(grad_filter_in + next * F3, F3, true);
        prefetch(q + i_next * F, F);
        prefetch(grad_h + i_next * F, F);
        prefetch(grad_X + i_next * 8 * F, 8 * F);
      }
      const T *__restrict q_i = q + i * F, *__restrict k_j = k + j * F, *__restrict v_j = values + j * F3;
      const T *__restrict f_j = filters + j * F3, *__restrict fi = filter_in + e * F3, *__restrict y = Y + e * 8;
      const T *__restrict X_j = X + j * 8 * F, *__restrict gX = grad_X + i * 8 * F, *__restrict gh = grad_h + i * F;
      edge_logits<T>(s, attention_in + e * F, q_i, k_j, sa, ds, logits);
      for (int64_t h = 0; h < H; ++h) {
        const T sig = sigmoid(logits[h]);
        alpha[h] = logits[h] * sig * scale;
        g_logit[h] = silu_grad(logits[h], sig) * scale;  // times Σ gm v below
      }
      edge_messages<T>(s, alpha, v_j, fi, f_j, F, o);  // o_d, o_t
      const T *__restrict o_d = o + F, *__restrict o_t = o + 2 * F;
      // gm = ∂/∂o: [grad_h_i | Σ_m Y_m gX_m | Σ_m gX_m X_j,m]; grad_y, grad_x
      T *__restrict gm_d = gm + F, *__restrict gm_t = gm + 2 * F;
      std::memcpy(gm, gh, F * sizeof(T));
      std::fill(gm_d, gm_d + 2 * F, T(0));
      T *__restrict gx_j = grad_x + j * 8 * F;
      for (int64_t m = 0; m < 8; ++m) {
        const T y_m = y[m];
        const T *__restrict gX_m = gX + m * F, *__restrict X_jm = X_j + m * F;
        T *__restrict gx_jm = gx_j + m * F;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < F; ++c) {
          dot += gX_m[c] * o_d[c];
          gm_d[c] += y_m * gX_m[c];
          gm_t[c] += gX_m[c] * X_jm[c];
          gx_jm[c] += gX_m[c] * o_t[c];
        }
        grad_y[e * 8 + m] = dot;
      }
      T *__restrict gfi = grad_filter_in + e * F3, *__restrict gf_j = grad_filters + j * F3;
      T *__restrict gv_j = grad_values + j * F3;
      const int64_t width = 3 * s.C;
      for (int64_t h = 0; h < H; ++h) {
        const T a = alpha[h];
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = h * width; c < (h + 1) * width; ++c) {
          gfi[c] = gm[c] * f_j[c];
          gf_j[c] += gm[c] * fi[c];
          gv_j[c] += a * gm[c];
          sum += gm[c] * v_j[c];
        }
        g_logit[h] *= sum;
        g_logits[e * H + h] = g_logit[h];
      }
      const T *__restrict ds_ = ds, *__restrict sa_ = sa;
      T *__restrict ga = grad_attention + e * F, *__restrict gk_j = grad_k + j * F;
      for (int64_t h = 0; h < H; ++h) {
        const T gl = g_logit[h];
#pragma omp simd
        for (int64_t c = h * s.C; c < (h + 1) * s.C; ++c) {
          gk_j[c] += gl * q_i[c] * sa_[c];
          ga[c] = gl * q_i[c] * k_j[c] * ds_[c];
        }
      }
    }
  }
}

// Backward, rows = receivers i: grad_q_i = Σ_e g_logits[e, head(c)] k_j silu(a)
template <typename T>
GEODITE_INLINE void interaction_backward_receivers(const InteractionArgs &g, const T *attention_in, const T *k,
                                                   const T *g_logits, T *grad_q, int64_t begin, int64_t end)
{
  const Shape s = g.s;
  const int64_t F = s.F;
  const int64_t last = g.last(end);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t i = g.rows[r];
    T *__restrict gq_i = grad_q + i * F;
    for (int64_t n = g.offsets[i]; n < g.offsets[i + 1]; ++n) {
      const int64_t e = g.order[n], j = g.sender[e];
      if (n + 1 < last) {
        prefetch(attention_in + g.order[n + 1] * F, F);
        prefetch(k + g.sender[g.order[n + 1]] * F, F);
      }
      const T *__restrict a = attention_in + e * F, *__restrict k_j = k + j * F;
      for (int64_t h = 0; h < s.H; ++h) {
        const T gl = g_logits[e * s.H + h];
#pragma omp simd
        for (int64_t c = h * s.C; c < (h + 1) * s.C; ++c) gq_i[c] += gl * k_j[c] * (a[c] * sigmoid(a[c]));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// geodite::rejected_inner_product: w_e = Σ_m Q_im K_jm − (Q_i·ŷ_e)(K_j·ŷ_e), Q, K [N, M, C] (channel stride 1)

struct RejectedArgs {
  int64_t M, C, q_node, q_m, k_node, k_m, y_edge;  // strides in elements
  const int64_t *sender, *receiver;
};

// one edge, M components known at compile time: per channel the sums over m run unrolled in registers (a vector
// of channels at a time), and w, Q·ŷ, K·ŷ are not read and written back for every m
template <typename T, int M>
GEODITE_INLINE void rejected_forward_edge(const T *__restrict Q_i, const T *__restrict K_j, const T *__restrict y,
                                          int64_t q_m, int64_t k_m, int64_t C, T *__restrict w_e)
{
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) {
    T dot = 0, qy = 0, ky = 0;
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      const T q = Q_i[m * q_m + c], k = K_j[m * k_m + c];
      dot += q * k;
      qy += y[m] * q;
      ky += y[m] * k;
    }
    w_e[c] = dot - qy * ky;
  }
}

// `body` with the number of components M = 1..MAX_COMPONENTS (rejected_args checks it) as the constant kM. A switch,
// not a generic lambda: a lambda is a function of its own, which target_clones would not compile for AVX-512/AVX2.
constexpr int64_t MAX_COMPONENTS = 8;
#define GEODITE_WITH_COMPONENTS(M, body)           \
  switch (M) {                                      \
    case 1: { constexpr int kM = 1; body; } break;  \
    case 2: { constexpr int kM = 2; body; } break;  \
    case 3: { constexpr int kM = 3; body; } break;  \
    case 4: { constexpr int kM = 4; body; } break;  \
    case 5: { constexpr int kM = 5; body; } break;  \
    case 6: { constexpr int kM = 6; body; } break;  \
    case 7: { constexpr int kM = 7; body; } break;  \
    default: { constexpr int kM = 8; body; } break; \
  }

template <typename T>
GEODITE_INLINE void rejected_forward_edges(const RejectedArgs &g, const T *Q, const T *K, const T *Y, T *w,
                                           int64_t begin, int64_t end)
{
  for (int64_t e = begin; e < end; ++e) {
    const T *Q_i = Q + g.receiver[e] * g.q_node, *K_j = K + g.sender[e] * g.k_node, *y = Y + e * g.y_edge;
    GEODITE_WITH_COMPONENTS(g.M, (rejected_forward_edge<T, kM>(Q_i, K_j, y, g.q_m, g.k_m, g.C, w + e * g.C)))
  }
}

// One edge of the backward pass, M components known at compile time (as rejected_forward_edge): per channel P·ŷ
// and O·ŷ in registers, the row's gradient out_row [M, C] updated; `receivers`: also py, oy (kept for) grad_y_e [M].
template <typename T, int M>
GEODITE_INLINE void rejected_backward_edge(bool receivers, const T *__restrict P, const T *__restrict O, int64_t p_m,
                                           int64_t o_m, const T *__restrict y, const T *__restrict ge, int64_t C,
                                           T *__restrict out_row, T *__restrict py, T *__restrict oy,
                                           T *__restrict grad_y_e)
{
  if (receivers) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      T p = 0, o = 0;
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) {
        p += y[m] * P[m * p_m + c];
        o += y[m] * O[m * o_m + c];
      }
      py[c] = p;
      oy[c] = o;
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) out_row[m * C + c] += ge[c] * (O[m * o_m + c] - y[m] * o);
    }
    for (int m = 0; m < M; ++m) {
      const T *__restrict P_m = P + m * p_m, *__restrict O_m = O + m * o_m;
      T dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < C; ++c) dot += ge[c] * (P_m[c] * oy[c] + O_m[c] * py[c]);
      grad_y_e[m] = -dot;
    }
  } else {  // P·ŷ only serves grad_y, which the receivers' pass writes
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      T o = 0;
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) o += y[m] * O[m * o_m + c];
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) out_row[m * C + c] += ge[c] * (O[m * o_m + c] - y[m] * o);
    }
  }
}

// Backward. `receivers`: rows i, grad_Q_i += g (K_j,m − ŷ_m K_j·ŷ) and grad_y; else rows j, grad_K_j += g (Q_i,m −
// ŷ_m Q_i·ŷ). (P, O) are the row's own and the other end's features; out the row's gradient [N, M, C] contiguous.
template <typename T>
GEODITE_INLINE void rejected_backward_rows(const RejectedArgs &g, bool receivers, const int64_t *offsets,
                                           const int64_t *order, const T *grad, const T *Q, const T *K,
                                           const T *Y, T *out, T *grad_y, int64_t begin, int64_t end)
{
  const int64_t C = g.C, M = g.M;
  T *buffer = scratch<T>(2 * C);
  T *__restrict py = buffer, *__restrict oy = buffer + C;
  for (int64_t row = begin; row < end; ++row) {
    T *__restrict out_row = out + row * M * C;
    for (int64_t n = offsets[row]; n < offsets[row + 1]; ++n) {
      const int64_t e = order[n];
      if (n + 1 < offsets[end]) {
        const int64_t next = order[n + 1];
        const T *other = receivers ? K + g.sender[next] * g.k_node : Q + g.receiver[next] * g.q_node;
        prefetch(grad + next * C, C);
        prefetch(other, (M - 1) * (receivers ? g.k_m : g.q_m) + C);
      }
      const T *P = receivers ? Q + row * g.q_node : K + row * g.k_node;
      const T *O = receivers ? K + g.sender[e] * g.k_node : Q + g.receiver[e] * g.q_node;
      const int64_t p_m = receivers ? g.q_m : g.k_m, o_m = receivers ? g.k_m : g.q_m;
      const T *y = Y + e * g.y_edge, *ge = grad + e * C;
      T *grad_y_e = receivers ? grad_y + e * M : nullptr;
      GEODITE_WITH_COMPONENTS(M, (rejected_backward_edge<T, kM>(receivers, P, O, p_m, o_m, y, ge, C, out_row, py, oy,
                                                               grad_y_e)))
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// geodite::edge_gate_update (fused.py EdgeGateUpdate): t' = t + silu(p_g) ⊙ u with p_h = t W_inᵀ [E, Fh],
// p_g = silu(p_h) W_outᵀ [E, F], u = LayerNorm(w) W_eᵀ [E, F], w [E, Fe]. The products run on a chunk of edges at
// a time (edge_matmul); these passes do the element-wise steps between them on the chunk's rows [begin, end),
// which the products have just written and the next product reads: in cache, where ATen's operators would each
// make a pass over [E, ·] tensors in memory.

struct GateArgs {
  int64_t F, Fh, Fe;  // channels of t, of the gate's hidden layer, of w
  double eps;         // the layer norm's
};

// hidden = silu(p_h); normed = LayerNorm(w) with its weight and bias; stats = (mean, 1/√(var + eps)) of each row
template <typename T>
GEODITE_INLINE void gate_inputs_rows(const GateArgs &g, const T *p_h, const T *w, const T *norm_weight,
                                     const T *norm_bias, T *hidden, T *normed, T *stats, int64_t begin, int64_t end)
{
  const int64_t Fh = g.Fh, Fe = g.Fe;
  const T *__restrict gamma = norm_weight, *__restrict beta = norm_bias;
  for (int64_t r = begin; r < end; ++r) {
    const T *__restrict p = p_h + r * Fh, *__restrict x = w + r * Fe;
    T *__restrict hidden_r = hidden + r * Fh, *__restrict normed_r = normed + r * Fe;
#pragma omp simd
    for (int64_t c = 0; c < Fh; ++c) hidden_r[c] = p[c] * sigmoid(p[c]);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < Fe; ++c) sum += x[c];
    const T mean = sum / T(Fe);
    T squares = 0;
#pragma omp simd reduction(+ : squares)
    for (int64_t c = 0; c < Fe; ++c) squares += (x[c] - mean) * (x[c] - mean);
    const T rstd = T(1) / std::sqrt(squares / T(Fe) + T(g.eps));
#pragma omp simd
    for (int64_t c = 0; c < Fe; ++c) normed_r[c] = (x[c] - mean) * rstd * gamma[c] + beta[c];
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
  }
}

// out = t + silu(p_g) u
template <typename T>
GEODITE_INLINE void gate_output_rows(const GateArgs &g, const T *t, const T *p_g, const T *u, T *out, int64_t begin,
                                     int64_t end)
{
  const int64_t F = g.F;
  for (int64_t r = begin; r < end; ++r) {
    const T *__restrict t_r = t + r * F, *__restrict p = p_g + r * F, *__restrict u_r = u + r * F;
    T *__restrict out_r = out + r * F;
#pragma omp simd
    for (int64_t c = 0; c < F; ++c) out_r[c] = t_r[c] + p[c] * sigmoid(p[c]) * u_r[c];
  }
}

// From gt = ∂/∂t': grad_u = gt silu(p_g), grad_pg = gt u silu'(p_g), and grad_t = gt (the residual's part; the
// gate's is added by a product after)
template <typename T>
GEODITE_INLINE void gate_backward_rows(const GateArgs &g, const T *grad, const T *p_g, const T *u, T *grad_u,
                                       T *grad_pg, T *grad_t, int64_t begin, int64_t end)
{
  const int64_t F = g.F;
  for (int64_t r = begin; r < end; ++r) {
    const T *__restrict gt = grad + r * F, *__restrict p = p_g + r * F, *__restrict u_r = u + r * F;
    T *__restrict gu = grad_u + r * F, *__restrict gp = grad_pg + r * F, *__restrict gt_out = grad_t + r * F;
#pragma omp simd
    for (int64_t c = 0; c < F; ++c) {
      const T s = sigmoid(p[c]);
      gu[c] = gt[c] * p[c] * s;
      gp[c] = gt[c] * u_r[c] * silu_grad(p[c], s);
      gt_out[c] = gt[c];
    }
  }
}

// grad_w = the layer norm's backward pass of grad_normed (from w and its stats): rstd (d − mean(d) − x̂ mean(d x̂))
// with d = grad_normed ⊙ weight, x̂ = (w − mean) rstd; and grad_hidden ⊙= silu'(p_h) in place (then ∂/∂p_h)
template <typename T>
GEODITE_INLINE void gate_inputs_backward_rows(const GateArgs &g, const T *w, const T *stats, const T *norm_weight,
                                              const T *grad_normed, const T *p_h, T *grad_hidden, T *grad_w,
                                              int64_t begin, int64_t end)
{
  const int64_t Fh = g.Fh, Fe = g.Fe;
  const T *__restrict gamma = norm_weight;
  for (int64_t r = begin; r < end; ++r) {
    const T *__restrict x = w + r * Fe, *__restrict gn = grad_normed + r * Fe, *__restrict p = p_h + r * Fh;
    T *__restrict gw = grad_w + r * Fe, *__restrict gh = grad_hidden + r * Fh;
    const T mean = stats[2 * r], rstd = stats[2 * r + 1];
    T sum = 0, sum_xhat = 0;
#pragma omp simd reduction(+ : sum, sum_xhat)
    for (int64_t c = 0; c < Fe; ++c) {
      const T d = gn[c] * gamma[c];
      sum += d;
      sum_xhat += d * (x[c] - mean) * rstd;
    }
    const T a = sum / T(Fe), b = sum_xhat / T(Fe);
#pragma omp simd
    for (int64_t c = 0; c < Fe; ++c) gw[c] = rstd * (gn[c] * gamma[c] - a - (x[c] - mean) * rstd * b);
#pragma omp simd
    for (int64_t c = 0; c < Fh; ++c) gh[c] *= silu_grad(p[c], sigmoid(p[c]));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The row-range functions that threads run, one per dtype, each compiled for three CPU levels (GEODITE_CLONES).

#define GEODITE_INSTANTIATE(T)                                                                                       \
  GEODITE_CLONES void interaction_forward_rows_##T(const InteractionArgs &g, const T *a, const T *fi, const T *Y,    \
                                                   const T *q, const T *k, const T *v, const T *f, const T *X,      \
                                                   T *dh, T *dX, int64_t begin, int64_t end)                        \
  {                                                                                                                  \
    interaction_forward_rows<T>(g, a, fi, Y, q, k, v, f, X, dh, dX, begin, end);                                     \
  }                                                                                                                  \
  GEODITE_CLONES void interaction_backward_senders_##T(                                                              \
      const InteractionArgs &g, const T *gh, const T *gX, const T *a, const T *fi, const T *Y, const T *q,           \
      const T *k, const T *v, const T *f, const T *X, T *ga, T *gfi, T *gy, T *gk, T *gv, T *gf, T *gx, T *gl,       \
      int64_t begin, int64_t end)                                                                                    \
  {                                                                                                                  \
    interaction_backward_senders<T>(g, gh, gX, a, fi, Y, q, k, v, f, X, ga, gfi, gy, gk, gv, gf, gx, gl, begin,      \
                                    end);                                                                            \
  }                                                                                                                  \
  GEODITE_CLONES void interaction_backward_receivers_##T(const InteractionArgs &g, const T *a, const T *k,           \
                                                         const T *gl, T *gq, int64_t begin, int64_t end)             \
  {                                                                                                                  \
    interaction_backward_receivers<T>(g, a, k, gl, gq, begin, end);                                                  \
  }                                                                                                                  \
  GEODITE_CLONES void rejected_forward_edges_##T(const RejectedArgs &g, const T *Q, const T *K, const T *Y, T *w,    \
                                                 int64_t begin, int64_t end)                                         \
  {                                                                                                                  \
    rejected_forward_edges<T>(g, Q, K, Y, w, begin, end);                                                            \
  }                                                                                                                  \
  GEODITE_CLONES void rejected_backward_rows_##T(const RejectedArgs &g, bool receivers, const int64_t *offsets,      \
                                                 const int64_t *order, const T *grad, const T *Q, const T *K,        \
                                                 const T *Y, T *out, T *grad_y, int64_t begin, int64_t end)          \
  {                                                                                                                  \
    rejected_backward_rows<T>(g, receivers, offsets, order, grad, Q, K, Y, out, grad_y, begin, end);                 \
  }                                                                                                                  \
  GEODITE_CLONES void gate_inputs_rows_##T(const GateArgs &g, const T *p_h, const T *w, const T *nw, const T *nb,    \
                                           T *hidden, T *normed, T *stats, int64_t begin, int64_t end)               \
  {                                                                                                                  \
    gate_inputs_rows<T>(g, p_h, w, nw, nb, hidden, normed, stats, begin, end);                                       \
  }                                                                                                                  \
  GEODITE_CLONES void gate_output_rows_##T(const GateArgs &g, const T *t, const T *p_g, const T *u, T *out,          \
                                           int64_t begin, int64_t end)                                               \
  {                                                                                                                  \
    gate_output_rows<T>(g, t, p_g, u, out, begin, end);                                                              \
  }                                                                                                                  \
  GEODITE_CLONES void gate_backward_rows_##T(const GateArgs &g, const T *grad, const T *p_g, const T *u, T *gu,      \
                                             T *gp, T *gt, int64_t begin, int64_t end)                               \
  {                                                                                                                  \
    gate_backward_rows<T>(g, grad, p_g, u, gu, gp, gt, begin, end);                                                  \
  }                                                                                                                  \
  GEODITE_CLONES void gate_inputs_backward_rows_##T(const GateArgs &g, const T *w, const T *stats, const T *nw,      \
                                                    const T *gn, const T *p_h, T *gh, T *gw, int64_t begin,          \
                                                    int64_t end)                                                     \
  {                                                                                                                  \
    gate_inputs_backward_rows<T>(g, w, stats, nw, gn, p_h, gh, gw, begin, end);                                      \
  }

GEODITE_INSTANTIATE(float)
GEODITE_INSTANTIATE(double)
#undef GEODITE_INSTANTIATE

// Overloads on the element type, for the dispatching operators below
#define GEODITE_OVERLOAD(name)                                                                                       \
  template <typename T, typename... Args>                                                                            \
  void name(Args &&...args)                                                                                          \
  {                                                                                                                  \
    if constexpr (std::is_same_v<T, float>)                                                                          \
      name##_float(std::forward<Args>(args)...);                                                                     \
    else                                                                                                             \
      name##_double(std::forward<Args>(args)...);                                                                    \
  }
namespace dispatch {
GEODITE_OVERLOAD(interaction_forward_rows)
GEODITE_OVERLOAD(interaction_backward_senders)
GEODITE_OVERLOAD(interaction_backward_receivers)
GEODITE_OVERLOAD(rejected_forward_edges)
GEODITE_OVERLOAD(rejected_backward_rows)
GEODITE_OVERLOAD(gate_inputs_rows)
GEODITE_OVERLOAD(gate_output_rows)
GEODITE_OVERLOAD(gate_backward_rows)
GEODITE_OVERLOAD(gate_inputs_backward_rows)
}  // namespace dispatch
#undef GEODITE_OVERLOAD
#undef GEODITE_WITH_COMPONENTS

// ---------------------------------------------------------------------------------------------------------------
// The operators

void check_inputs(const Tensor &reference, std::initializer_list<const Tensor *> tensors)
{
  TORCH_CHECK(reference.device().is_cpu(), "geodite:: operators run on the CPU only (got ", reference.device(), ")");
  TORCH_CHECK(reference.scalar_type() == at::kFloat || reference.scalar_type() == at::kDouble,
              "geodite:: operators take float32 or float64, not ", reference.scalar_type());
  for (const Tensor *tensor : tensors)
    TORCH_CHECK(tensor->scalar_type() == reference.scalar_type() && tensor->device() == reference.device(),
                "geodite:: operator inputs must share one dtype and device");
}

// edges grouped by receiver and by sender, per calling thread, kept across calls
RowEdges &receiver_rows()
{
  thread_local RowEdges rows;
  return rows;
}

RowEdges &sender_rows()
{
  thread_local RowEdges rows;
  return rows;
}

void check_heads(int64_t F, int64_t num_heads)
{
  TORCH_CHECK(num_heads > 0 && F % num_heads == 0, "geodite: ", F, " channels do not split into ", num_heads,
              " heads");
}

// The interaction's node inputs (q, k [N, F], values, filters [N, 3F], X [N, 8, F]), contiguous, and its edges.
// A pass (below) runs over one set of edges: all of them, or one chunk [start, start + count) of the edge index,
// whose per-edge rows (attention_in, filter_in, gradients) are then indexed from the chunk's first edge.
struct Interaction {
  Tensor q, k, values, filters, X, sender, receiver;
  int64_t N, F, H;

  Interaction(const Tensor &q_, const Tensor &k_, const Tensor &values_, const Tensor &filters_, const Tensor &X_,
              const Tensor &sender_, const Tensor &receiver_, int64_t num_heads)
      : q(q_.contiguous()), k(k_.contiguous()), values(values_.contiguous()), filters(filters_.contiguous()),
        X(X_.contiguous()), N(X_.size(0)), F(X_.size(-1)), H(num_heads)
  {
    TORCH_CHECK(X.dim() == 3 && X.size(1) == 8, "geodite: X must be [N, 8, F]");
    check_heads(F, H);
    sender = long_index(sender_, N);
    receiver = long_index(receiver_, N);
  }

  InteractionArgs args(const RowEdges &rows, int64_t start) const
  {
    return {{F, H, F / H}, sender.data_ptr<int64_t>() + start, receiver.data_ptr<int64_t>() + start,
            rows.offsets.data(), rows.order.data(), rows.rows.data(), 1.0 / std::sqrt(static_cast<double>(F))};
  }

  // dh, dX += the messages of edges [start, start + count): attention_in [count, F], filter_in [count, 3F]
  template <typename T>
  void forward(int64_t start, int64_t count, const T *attention_in, const T *filter_in, const T *Y, T *dh,
               T *dX) const
  {
    RowEdges &rows = receiver_rows();
    rows.build(receiver.data_ptr<int64_t>() + start, count, N);
    const InteractionArgs g = args(rows, start);
    const int64_t R = rows.rows.size();
    at::parallel_for(0, R, row_grain(count, R), [&](int64_t begin, int64_t end) {
      dispatch::interaction_forward_rows<T>(g, attention_in, filter_in, Y + start * 8, q.data_ptr<T>(),
                                            k.data_ptr<T>(), values.data_ptr<T>(), filters.data_ptr<T>(),
                                            X.data_ptr<T>(), dh, dX, begin, end);
    });
  }

  // Backward over edges [start, start + count): writes grad_attention [count, F], grad_filter_in [count, 3F] and
  // grad_y (from the chunk's first edge), adds to the node gradients (grad_q, grad_k, grad_values, grad_filters,
  // grad_x: contiguous, shaped like their inputs)
  template <typename T>
  void backward(int64_t start, int64_t count, const T *grad_h, const T *grad_X, const T *attention_in,
                const T *filter_in, const T *Y, T *grad_attention, T *grad_filter_in, T *grad_y, T *grad_q,
                T *grad_k, T *grad_values, T *grad_filters, T *grad_x) const
  {
    RowEdges &by_sender = sender_rows(), &by_receiver = receiver_rows();
    by_sender.build(sender.data_ptr<int64_t>() + start, count, N);
    by_receiver.build(receiver.data_ptr<int64_t>() + start, count, N);
    const InteractionArgs senders = args(by_sender, start), receivers = args(by_receiver, start);
    thread_local std::vector<T> g_logits_buffer;  // [count, H], kept across calls
    g_logits_buffer.resize(std::max<size_t>(g_logits_buffer.size(), count * H));
    T *g_logits = g_logits_buffer.data();
    const int64_t R_s = by_sender.rows.size(), R_r = by_receiver.rows.size();
    at::parallel_for(0, R_s, row_grain(count, R_s), [&](int64_t begin, int64_t end) {
      dispatch::interaction_backward_senders<T>(senders, grad_h, grad_X, attention_in, filter_in, Y + start * 8,
                                                q.data_ptr<T>(), k.data_ptr<T>(), values.data_ptr<T>(),
                                                filters.data_ptr<T>(), X.data_ptr<T>(), grad_attention,
                                                grad_filter_in, grad_y + start * 8, grad_k, grad_values,
                                                grad_filters, grad_x, g_logits, begin, end);
    });
    at::parallel_for(0, R_r, row_grain(count, R_r), [&](int64_t begin, int64_t end) {
      dispatch::interaction_backward_receivers<T>(receivers, attention_in, k.data_ptr<T>(), g_logits, grad_q, begin,
                                                  end);
    });
  }
};

std::tuple<Tensor, Tensor> interaction_messages(const Tensor &attention_in_, const Tensor &filter_in_,
                                                const Tensor &Y_, const Tensor &q, const Tensor &k,
                                                const Tensor &values, const Tensor &filters, const Tensor &X_,
                                                const Tensor &sender, const Tensor &receiver, int64_t num_heads)
{
  check_inputs(X_, {&attention_in_, &filter_in_, &Y_, &q, &k, &values, &filters});
  const Interaction op(q, k, values, filters, X_, sender, receiver, num_heads);
  const Tensor attention_in = attention_in_.contiguous(), filter_in = filter_in_.contiguous(), Y = Y_.contiguous();
  Tensor dh = at::zeros({op.N, op.F}, op.X.options()), dX = at::zeros_like(op.X);
  AT_DISPATCH_FLOATING_TYPES(op.X.scalar_type(), "geodite::interaction_messages", [&] {
    op.forward<scalar_t>(0, Y.size(0), attention_in.data_ptr<scalar_t>(), filter_in.data_ptr<scalar_t>(),
                         Y.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), dX.data_ptr<scalar_t>());
  });
  return {dh, dX};
}

// gradients of (attention_in, filter_in, Y, q, k, values, filters, X) from those of (dh, dX)
using Gradients8 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

Gradients8 interaction_messages_backward(const Tensor &grad_h_, const Tensor &grad_X_, const Tensor &attention_in_,
                                         const Tensor &filter_in_, const Tensor &Y_, const Tensor &q,
                                         const Tensor &k, const Tensor &values, const Tensor &filters,
                                         const Tensor &X, const Tensor &sender, const Tensor &receiver,
                                         int64_t num_heads)
{
  check_inputs(X, {&grad_h_, &grad_X_, &attention_in_, &filter_in_, &Y_, &q, &k, &values, &filters});
  const Interaction op(q, k, values, filters, X, sender, receiver, num_heads);
  const Tensor grad_h = grad_h_.contiguous(), grad_X = grad_X_.contiguous();
  const Tensor attention_in = attention_in_.contiguous(), filter_in = filter_in_.contiguous(), Y = Y_.contiguous();
  Tensor grad_q = at::zeros_like(op.q), grad_k = at::zeros_like(op.k), grad_values = at::zeros_like(op.values);
  Tensor grad_filters = at::zeros_like(op.filters), grad_x = at::zeros_like(op.X);
  Tensor grad_attention = at::empty_like(attention_in), grad_filter_in = at::empty_like(filter_in);
  Tensor grad_y = at::empty_like(Y);
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "geodite::interaction_messages_backward", [&] {
    op.backward<scalar_t>(0, Y.size(0), grad_h.data_ptr<scalar_t>(), grad_X.data_ptr<scalar_t>(),
                          attention_in.data_ptr<scalar_t>(), filter_in.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(),
                          grad_attention.data_ptr<scalar_t>(), grad_filter_in.data_ptr<scalar_t>(),
                          grad_y.data_ptr<scalar_t>(), grad_q.data_ptr<scalar_t>(), grad_k.data_ptr<scalar_t>(),
                          grad_values.data_ptr<scalar_t>(), grad_filters.data_ptr<scalar_t>(),
                          grad_x.data_ptr<scalar_t>());
  });
  return {grad_attention, grad_filter_in, grad_y, grad_q, grad_k, grad_values, grad_filters, grad_x};
}

// ---------------------------------------------------------------------------------------------------------------
// geodite::interaction_messages_t: the same messages from the edge scalars t [E, F] and the two edge maps
// (attention_in = t W_rᵀ, filter_in = t W_sᵀ; W_r [F, F], W_s [3F, F]), computed chunk by chunk of edges (edge_matmul into
// per-thread buffers kept across calls) and never for all edges at once: the backward pass recomputes them from
// t, so autograd keeps t [E, F] instead of [E, 4F], and no [E, 4F] tensor is allocated in either pass. Chunks
// visit the edges in order and every row sums its edges in edge order, so chunking changes no sum.

// out = x mat2 (or out += x mat2 with `accumulate`) for one chunk's per-edge rows: x [rows, K], mat2 [K, M] (a
// weight or a transposed view of one), out [rows, M] contiguous. In float32, oneDNN's matrix product where torch
// has oneDNN and it is switched on (torch.backends.mkldnn), as inference's float32 products in fused.py
// (`edge_product`): on 2,730-row chunks of the published size ~190-210 GFLOP/s against MKL's ~130-190 on this
// project's AVX-512 CPU (docs/speed.md, session 11); the same sums up to float32 rounding. float64: at::mm, unchanged.
void edge_matmul(Tensor &out, const Tensor &x, const Tensor &mat2, bool accumulate)
{
#ifdef GEODITE_ONEDNN
  if (x.scalar_type() == at::kFloat && at::globalContext().userEnabledMkldnn()) {
    at::native::mkldnn_matmul(x, mat2, out, accumulate ? 1.0f : 0.0f, 1.0f);
    return;
  }
#endif
  if (accumulate)
    out.addmm_(x, mat2);
  else
    at::mm_out(out, x, mat2);
}

//: bytes of one chunk's [edges, 4F] rows (attention_in and filter_in, or their gradients): cache-sized
constexpr int64_t CHUNK_BYTES = 8 << 20;

int64_t chunk_edges(int64_t F, size_t element_size)
{
  return std::max<int64_t>(64, CHUNK_BYTES / static_cast<int64_t>(4 * F * element_size));
}

// a [rows, cols] tensor over per-thread storage kept across calls (grown, never shrunk); `slot` (0-7) tells apart
// the buffers one call uses at once
Tensor chunk_buffer(int slot, int64_t rows, int64_t cols, const at::TensorOptions &options)
{
  thread_local std::array<Tensor, 16> buffers;
  Tensor &buffer = buffers[2 * slot + (options.dtype() == at::kDouble ? 1 : 0)];
  if (!buffer.defined() || buffer.numel() < rows * cols) buffer = at::empty({rows * cols}, options);
  return buffer.narrow(0, 0, rows * cols).view({rows, cols});
}

void check_edge_weights(const Tensor &t, const Tensor &weight_r, const Tensor &weight_s, int64_t F)
{
  TORCH_CHECK(t.dim() == 2 && t.size(1) == F, "geodite: t must be [E, F] with F = ", F);
  TORCH_CHECK(weight_r.dim() == 2 && weight_r.size(0) == F && weight_r.size(1) == F,
              "geodite: weight_r must be [F, F]");
  TORCH_CHECK(weight_s.dim() == 2 && weight_s.size(0) == 3 * F && weight_s.size(1) == F,
              "geodite: weight_s must be [3F, F]");
}

std::tuple<Tensor, Tensor> interaction_messages_t(const Tensor &t_, const Tensor &weight_r, const Tensor &weight_s,
                                                  const Tensor &Y_, const Tensor &q, const Tensor &k,
                                                  const Tensor &values, const Tensor &filters, const Tensor &X,
                                                  const Tensor &sender, const Tensor &receiver, int64_t num_heads)
{
  check_inputs(X, {&t_, &weight_r, &weight_s, &Y_, &q, &k, &values, &filters});
  const Interaction op(q, k, values, filters, X, sender, receiver, num_heads);
  check_edge_weights(t_, weight_r, weight_s, op.F);
  const Tensor t = t_.contiguous(), Y = Y_.contiguous();
  const int64_t E = Y.size(0), F = op.F, chunk = chunk_edges(F, X.element_size());
  Tensor dh = at::zeros({op.N, F}, op.X.options()), dX = at::zeros_like(op.X);
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "geodite::interaction_messages_t", [&] {
    for (int64_t start = 0; start < E; start += chunk) {
      const int64_t count = std::min(chunk, E - start);
      const Tensor t_c = t.narrow(0, start, count);
      Tensor attention_in = chunk_buffer(0, count, F, X.options()), filter_in = chunk_buffer(1, count, 3 * F, X.options());
      edge_matmul(attention_in, t_c, weight_r.t(), false);
      edge_matmul(filter_in, t_c, weight_s.t(), false);
      op.forward<scalar_t>(start, count, attention_in.data_ptr<scalar_t>(), filter_in.data_ptr<scalar_t>(),
                           Y.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(), dX.data_ptr<scalar_t>());
    }
  });
  return {dh, dX};
}

// gradients of (t, Y, q, k, values, filters, X) from those of (dh, dX); none for the weights (inference)
using Gradients7 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

Gradients7 interaction_messages_t_backward(const Tensor &grad_h_, const Tensor &grad_X_, const Tensor &t_,
                                           const Tensor &weight_r, const Tensor &weight_s, const Tensor &Y_,
                                           const Tensor &q, const Tensor &k, const Tensor &values,
                                           const Tensor &filters, const Tensor &X, const Tensor &sender,
                                           const Tensor &receiver, int64_t num_heads)
{
  check_inputs(X, {&grad_h_, &grad_X_, &t_, &weight_r, &weight_s, &Y_, &q, &k, &values, &filters});
  const Interaction op(q, k, values, filters, X, sender, receiver, num_heads);
  check_edge_weights(t_, weight_r, weight_s, op.F);
  const Tensor grad_h = grad_h_.contiguous(), grad_X = grad_X_.contiguous(), t = t_.contiguous(), Y = Y_.contiguous();
  const int64_t E = Y.size(0), F = op.F, chunk = chunk_edges(F, X.element_size());
  Tensor grad_q = at::zeros_like(op.q), grad_k = at::zeros_like(op.k), grad_values = at::zeros_like(op.values);
  Tensor grad_filters = at::zeros_like(op.filters), grad_x = at::zeros_like(op.X);
  Tensor grad_t = at::empty_like(t), grad_y = at::empty_like(Y);
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "geodite::interaction_messages_t_backward", [&] {
    for (int64_t start = 0; start < E; start += chunk) {
      const int64_t count = std::min(chunk, E - start);
      const Tensor t_c = t.narrow(0, start, count);
      Tensor attention_in = chunk_buffer(0, count, F, X.options()), filter_in = chunk_buffer(1, count, 3 * F, X.options());
      Tensor grad_attention = chunk_buffer(2, count, F, X.options());
      Tensor grad_filter_in = chunk_buffer(3, count, 3 * F, X.options());
      edge_matmul(attention_in, t_c, weight_r.t(), false);
      edge_matmul(filter_in, t_c, weight_s.t(), false);
      op.backward<scalar_t>(start, count, grad_h.data_ptr<scalar_t>(), grad_X.data_ptr<scalar_t>(),
                            attention_in.data_ptr<scalar_t>(), filter_in.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(),
                            grad_attention.data_ptr<scalar_t>(), grad_filter_in.data_ptr<scalar_t>(),
                            grad_y.data_ptr<scalar_t>(), grad_q.data_ptr<scalar_t>(), grad_k.data_ptr<scalar_t>(),
                            grad_values.data_ptr<scalar_t>(), grad_filters.data_ptr<scalar_t>(),
                            grad_x.data_ptr<scalar_t>());
      Tensor grad_t_c = grad_t.narrow(0, start, count);
      edge_matmul(grad_t_c, grad_attention, weight_r, false);
      edge_matmul(grad_t_c, grad_filter_in, weight_s, true);
    }
  });
  return {grad_t, grad_y, grad_q, grad_k, grad_values, grad_filters, grad_x};
}

// ---------------------------------------------------------------------------------------------------------------
// geodite::edge_gate_update: the edge update's gate and residual t' = t + silu(p_g) ⊙ u (the passes above), chunk
// by chunk of edges. With `keep` it also returns p_h [E, Fh], p_g [E, F], u [E, F] and the layer norm's stats
// [E, 2] for the backward pass (autograd through the plain expression keeps those and the gate silu(p_g) too);
// without, these come back with no rows and the backward pass recomputes them per chunk from t and w (three more
// products: fused.KEEP_EDGE_BYTES decides). No gradient for the weights (inference).

// rows of a chunk per task of the element-wise passes
constexpr int64_t GATE_GRAIN = 64;

struct Gate {
  Tensor t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias;
  GateArgs args;

  Gate(const Tensor &t_, const Tensor &w_, const Tensor &weight_in_, const Tensor &weight_out_,
       const Tensor &weight_e_, const Tensor &norm_weight_, const Tensor &norm_bias_, double eps)
      : t(t_.contiguous()), w(w_.contiguous()), weight_in(weight_in_), weight_out(weight_out_), weight_e(weight_e_),
        norm_weight(norm_weight_.contiguous()), norm_bias(norm_bias_.contiguous())
  {
    check_inputs(t_, {&w_, &weight_in_, &weight_out_, &weight_e_, &norm_weight_, &norm_bias_});
    TORCH_CHECK(t.dim() == 2 && w.dim() == 2 && w.size(0) == t.size(0),
                "geodite: edge_gate_update takes t [E, F] and w [E, Fe]");
    const int64_t F = t.size(1), Fe = w.size(1), Fh = weight_in.size(0);
    TORCH_CHECK(weight_in.dim() == 2 && weight_in.size(1) == F, "geodite: weight_in must be [Fh, F]");
    TORCH_CHECK(weight_out.dim() == 2 && weight_out.size(0) == F && weight_out.size(1) == Fh,
                "geodite: weight_out must be [F, Fh]");
    TORCH_CHECK(weight_e.dim() == 2 && weight_e.size(0) == F && weight_e.size(1) == Fe,
                "geodite: weight_e must be [F, Fe]");
    TORCH_CHECK(norm_weight.numel() == Fe && norm_bias.numel() == Fe,
                "geodite: the norm's weight and bias must be [Fe]");
    args = {F, Fh, Fe, eps};
  }

  int64_t edges() const { return t.size(0); }

  // p_h, hidden = silu(p_h), p_g, normed = LayerNorm(w), u and stats of edges [start, start + count) into the
  // [count, ·] tensors given (contiguous)
  template <typename T>
  void inputs(int64_t start, int64_t count, Tensor &p_h, Tensor &hidden, Tensor &p_g, Tensor &normed, Tensor &u,
              Tensor &stats) const
  {
    edge_matmul(p_h, t.narrow(0, start, count), weight_in.t(), false);
    at::parallel_for(0, count, GATE_GRAIN, [&](int64_t begin, int64_t end) {
      dispatch::gate_inputs_rows<T>(args, p_h.data_ptr<T>(), w.data_ptr<T>() + start * args.Fe,
                                    norm_weight.data_ptr<T>(), norm_bias.data_ptr<T>(), hidden.data_ptr<T>(),
                                    normed.data_ptr<T>(), stats.data_ptr<T>(), begin, end);
    });
    edge_matmul(p_g, hidden, weight_out.t(), false);
    edge_matmul(u, normed, weight_e.t(), false);
  }
};

using GateOutputs = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

GateOutputs edge_gate_update(const Tensor &t, const Tensor &w, const Tensor &weight_in, const Tensor &weight_out,
                             const Tensor &weight_e, const Tensor &norm_weight, const Tensor &norm_bias, double eps,
                             bool keep)
{
  const Gate op(t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps);
  const GateArgs &a = op.args;
  const int64_t E = op.edges(), kept = keep ? E : 0, chunk = chunk_edges(a.F, t.element_size());
  const at::TensorOptions options = op.t.options();
  Tensor out = at::empty_like(op.t);
  Tensor p_h = at::empty({kept, a.Fh}, options), p_g = at::empty({kept, a.F}, options);
  Tensor u = at::empty({kept, a.F}, options), stats = at::empty({kept, 2}, options);
  AT_DISPATCH_FLOATING_TYPES(op.t.scalar_type(), "geodite::edge_gate_update", [&] {
    for (int64_t start = 0; start < E; start += chunk) {
      const int64_t count = std::min(chunk, E - start);
      Tensor p_h_c = keep ? p_h.narrow(0, start, count) : chunk_buffer(0, count, a.Fh, options);
      Tensor p_g_c = keep ? p_g.narrow(0, start, count) : chunk_buffer(2, count, a.F, options);
      Tensor u_c = keep ? u.narrow(0, start, count) : chunk_buffer(4, count, a.F, options);
      Tensor stats_c = keep ? stats.narrow(0, start, count) : chunk_buffer(5, count, 2, options);
      Tensor hidden = chunk_buffer(1, count, a.Fh, options), normed = chunk_buffer(3, count, a.Fe, options);
      op.inputs<scalar_t>(start, count, p_h_c, hidden, p_g_c, normed, u_c, stats_c);
      at::parallel_for(0, count, GATE_GRAIN, [&](int64_t begin, int64_t end) {
        dispatch::gate_output_rows<scalar_t>(a, op.t.data_ptr<scalar_t>() + start * a.F, p_g_c.data_ptr<scalar_t>(),
                                             u_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>() + start * a.F,
                                             begin, end);
      });
    }
  });
  return {out, p_h, p_g, u, stats};
}

// gradients of (t, w) from that of t'; p_h, p_g, u, stats: edge_gate_update's (with or without rows)
std::tuple<Tensor, Tensor> edge_gate_update_backward(const Tensor &grad_, const Tensor &t, const Tensor &w,
                                                     const Tensor &weight_in, const Tensor &weight_out,
                                                     const Tensor &weight_e, const Tensor &norm_weight,
                                                     const Tensor &norm_bias, double eps, const Tensor &p_h_,
                                                     const Tensor &p_g_, const Tensor &u_, const Tensor &stats_)
{
  const Gate op(t, w, weight_in, weight_out, weight_e, norm_weight, norm_bias, eps);
  const GateArgs &a = op.args;
  const int64_t E = op.edges(), chunk = chunk_edges(a.F, t.element_size());
  check_inputs(op.t, {&grad_, &p_h_, &p_g_, &u_, &stats_});
  TORCH_CHECK(grad_.sizes() == op.t.sizes(), "geodite: edge_gate_update's gradient must be shaped like t");
  const bool kept = p_h_.size(0) == E;
  TORCH_CHECK(!kept || (p_h_.size(1) == a.Fh && p_g_.size(0) == E && u_.size(0) == E && stats_.size(0) == E),
              "geodite: edge_gate_update_backward takes the forward operator's saved tensors");
  const Tensor grad = grad_.contiguous(), p_h = p_h_.contiguous(), p_g = p_g_.contiguous(), u = u_.contiguous();
  const Tensor stats = stats_.contiguous();
  const at::TensorOptions options = op.t.options();
  Tensor grad_t = at::empty_like(op.t), grad_w = at::empty_like(op.w);
  AT_DISPATCH_FLOATING_TYPES(op.t.scalar_type(), "geodite::edge_gate_update_backward", [&] {
    for (int64_t start = 0; start < E; start += chunk) {
      const int64_t count = std::min(chunk, E - start);
      Tensor p_h_c, p_g_c, u_c, stats_c;
      if (kept) {
        p_h_c = p_h.narrow(0, start, count), p_g_c = p_g.narrow(0, start, count), u_c = u.narrow(0, start, count);
        stats_c = stats.narrow(0, start, count);
      } else {
        p_h_c = chunk_buffer(0, count, a.Fh, options), p_g_c = chunk_buffer(2, count, a.F, options);
        u_c = chunk_buffer(4, count, a.F, options), stats_c = chunk_buffer(5, count, 2, options);
        Tensor hidden = chunk_buffer(1, count, a.Fh, options), normed = chunk_buffer(3, count, a.Fe, options);
        op.inputs<scalar_t>(start, count, p_h_c, hidden, p_g_c, normed, u_c, stats_c);
      }
      Tensor grad_u = chunk_buffer(6, count, a.F, options), grad_pg = chunk_buffer(7, count, a.F, options);
      Tensor grad_t_c = grad_t.narrow(0, start, count);
      at::parallel_for(0, count, GATE_GRAIN, [&](int64_t begin, int64_t end) {
        dispatch::gate_backward_rows<scalar_t>(a, grad.data_ptr<scalar_t>() + start * a.F, p_g_c.data_ptr<scalar_t>(),
                                               u_c.data_ptr<scalar_t>(), grad_u.data_ptr<scalar_t>(),
                                               grad_pg.data_ptr<scalar_t>(), grad_t_c.data_ptr<scalar_t>(), begin,
                                               end);
      });
      Tensor grad_normed = chunk_buffer(3, count, a.Fe, options), grad_hidden = chunk_buffer(1, count, a.Fh, options);
      edge_matmul(grad_normed, grad_u, op.weight_e, false);
      edge_matmul(grad_hidden, grad_pg, op.weight_out, false);
      at::parallel_for(0, count, GATE_GRAIN, [&](int64_t begin, int64_t end) {
        dispatch::gate_inputs_backward_rows<scalar_t>(a, op.w.data_ptr<scalar_t>() + start * a.Fe,
                                                      stats_c.data_ptr<scalar_t>(), op.norm_weight.data_ptr<scalar_t>(),
                                                      grad_normed.data_ptr<scalar_t>(), p_h_c.data_ptr<scalar_t>(),
                                                      grad_hidden.data_ptr<scalar_t>(),
                                                      grad_w.data_ptr<scalar_t>() + start * a.Fe, begin, end);
      });
      edge_matmul(grad_t_c, grad_hidden, op.weight_in, true);
    }
  });
  return {grad_t, grad_w};
}

// Q, K with unit channel stride (any other strides), Y with unit m stride
RejectedArgs rejected_args(Tensor &Q, Tensor &K, Tensor &Y, const Tensor &sender, const Tensor &receiver)
{
  TORCH_CHECK(Q.dim() == 3 && K.dim() == 3 && Y.dim() == 2 && Q.size(1) == Y.size(1) && K.sizes() == Q.sizes(),
              "geodite: rejected_inner_product takes Q, K [N, M, C] and Y [E, M]");
  TORCH_CHECK(Q.size(1) >= 1 && Q.size(1) <= MAX_COMPONENTS, "geodite: rejected_inner_product takes 1 to ",
              MAX_COMPONENTS, " components M, not ", Q.size(1));
  if (Q.stride(2) != 1) Q = Q.contiguous();
  if (K.stride(2) != 1) K = K.contiguous();
  if (Y.stride(1) != 1) Y = Y.contiguous();
  return {Q.size(1), Q.size(2), Q.stride(0), Q.stride(1), K.stride(0), K.stride(1), Y.stride(0),
          sender.data_ptr<int64_t>(), receiver.data_ptr<int64_t>()};
}

Tensor rejected_inner_product_edges(const Tensor &Q_, const Tensor &K_, const Tensor &Y_, const Tensor &sender_,
                                    const Tensor &receiver_)
{
  check_inputs(Q_, {&K_, &Y_});
  Tensor Q = Q_, K = K_, Y = Y_;
  const Tensor sender = long_index(sender_, Q.size(0)), receiver = long_index(receiver_, Q.size(0));
  const RejectedArgs args = rejected_args(Q, K, Y, sender, receiver);
  const int64_t E = Y.size(0);
  Tensor w = at::empty({E, args.C}, Q.options());
  AT_DISPATCH_FLOATING_TYPES(Q.scalar_type(), "geodite::rejected_inner_product", [&] {
    at::parallel_for(0, E, 32, [&](int64_t begin, int64_t end) {
      dispatch::rejected_forward_edges<scalar_t>(args, Q.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
                                                 Y.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), begin, end);
    });
  });
  return w;
}

// gradients of (Q, K, Y) from that of w [E, C]
std::tuple<Tensor, Tensor, Tensor> rejected_inner_product_edges_backward(const Tensor &grad_, const Tensor &Q_,
                                                                         const Tensor &K_, const Tensor &Y_,
                                                                         const Tensor &sender_,
                                                                         const Tensor &receiver_)
{
  check_inputs(Q_, {&grad_, &K_, &Y_});
  Tensor Q = Q_, K = K_, Y = Y_;
  const Tensor grad = grad_.contiguous();
  const Tensor sender = long_index(sender_, Q.size(0)), receiver = long_index(receiver_, Q.size(0));
  const RejectedArgs args = rejected_args(Q, K, Y, sender, receiver);
  const int64_t E = Y.size(0), N = Q.size(0);
  RowEdges &by_sender = sender_rows(), &by_receiver = receiver_rows();
  by_sender.build(args.sender, E, N);
  by_receiver.build(args.receiver, E, N);
  Tensor grad_q = at::zeros(Q.sizes(), Q.options()), grad_k = at::zeros(K.sizes(), K.options());
  Tensor grad_y = at::empty({E, args.M}, Y.options());
  AT_DISPATCH_FLOATING_TYPES(Q.scalar_type(), "geodite::rejected_inner_product_backward", [&] {
    at::parallel_for(0, N, row_grain(E, N), [&](int64_t begin, int64_t end) {
      dispatch::rejected_backward_rows<scalar_t>(args, true, by_receiver.offsets.data(), by_receiver.order.data(),
                                                 grad.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(),
                                                 K.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(),
                                                 grad_q.data_ptr<scalar_t>(), grad_y.data_ptr<scalar_t>(), begin, end);
    });
    at::parallel_for(0, N, row_grain(E, N), [&](int64_t begin, int64_t end) {
      dispatch::rejected_backward_rows<scalar_t>(args, false, by_sender.offsets.data(), by_sender.order.data(),
                                                 grad.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(),
                                                 K.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(),
                                                 grad_k.data_ptr<scalar_t>(), nullptr, begin, end);
    });
  });
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
  m.def("interaction_messages_t(Tensor t, Tensor weight_r, Tensor weight_s, Tensor Y, Tensor q, Tensor k, "
        "Tensor values, Tensor filters, Tensor X, Tensor sender, Tensor receiver, int num_heads) -> (Tensor, Tensor)");
  m.def("interaction_messages_t_backward(Tensor grad_h, Tensor grad_X, Tensor t, Tensor weight_r, Tensor weight_s, "
        "Tensor Y, Tensor q, Tensor k, Tensor values, Tensor filters, Tensor X, Tensor sender, Tensor receiver, "
        "int num_heads) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("edge_gate_update(Tensor t, Tensor w, Tensor weight_in, Tensor weight_out, Tensor weight_e, "
        "Tensor norm_weight, Tensor norm_bias, float eps, bool keep) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("edge_gate_update_backward(Tensor grad, Tensor t, Tensor w, Tensor weight_in, Tensor weight_out, "
        "Tensor weight_e, Tensor norm_weight, Tensor norm_bias, float eps, Tensor pre_hidden, Tensor pre_gate, "
        "Tensor update, Tensor stats) -> (Tensor, Tensor)");
  m.def("rejected_inner_product(Tensor Q, Tensor K, Tensor Y, Tensor sender, Tensor receiver) -> Tensor");
  m.def("rejected_inner_product_backward(Tensor grad, Tensor Q, Tensor K, Tensor Y, Tensor sender, "
        "Tensor receiver) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(geodite, CPU, m)
{
  m.impl("interaction_messages", &interaction_messages);
  m.impl("interaction_messages_backward", &interaction_messages_backward);
  m.impl("interaction_messages_t", &interaction_messages_t);
  m.impl("interaction_messages_t_backward", &interaction_messages_t_backward);
  m.impl("edge_gate_update", &edge_gate_update);
  m.impl("edge_gate_update_backward", &edge_gate_update_backward);
  m.impl("rejected_inner_product", &rejected_inner_product_edges);
  m.impl("rejected_inner_product_backward", &rejected_inner_product_edges_backward);
}
