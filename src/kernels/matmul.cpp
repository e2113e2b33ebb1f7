// Matmul driver: argument checks, activation quantization, panel tiling over the thread
// pool, and the floating-point GEMM (OpenBLAS) for F32/F16/BF16 weights.
//
// Work is split into panels of weight rows whose size does not depend on the thread count,
// and each output element is computed by exactly one task, so results are bitwise identical
// for any number of threads.
#include "ruvdllm/kernels/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/matmul_dot.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/strings.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm {
namespace {

using matmul_detail::ActLayout;
using matmul_detail::QuantKernels;

// 64-byte aligned scratch that grows and is kept per thread, so steady-state calls allocate
// nothing and never touch fresh pages.
class Scratch {
 public:
  uint8_t* get(size_t bytes) {
    if (bytes + 64 > buffer_.size()) buffer_.resize(bytes + 64);
    const auto base = reinterpret_cast<uintptr_t>(buffer_.data());
    return buffer_.data() + ((64 - base % 64) % 64);
  }

 private:
  std::vector<uint8_t> buffer_;
};

Scratch& activation_scratch() {
  thread_local Scratch s;
  return s;
}
Scratch& panel_scratch() {
  thread_local Scratch s;
  return s;
}

void check_args(const TensorView& w, int64_t n_begin, int64_t n_end, const float* x, int64_t m,
                const float* y) {
  if (w.dims() < 1 || w.dims() > 2) {
    fail("matmul: weight {} must be 2-D, has {} dimensions", w.name, w.dims());
  }
  const TypeTraits& traits = type_traits(w.type);  // throws for unknown types
  if (w.type == TensorType::Q8_K)
    fail("matmul: weight {} has type q8_K, which is activation-only", w.name);
  if (w.row_len() % traits.block_size != 0) {
    fail("matmul: weight {} rows of {} are not a multiple of {}'s block size {}", w.name,
         w.row_len(), traits.name, traits.block_size);
  }
  if (n_begin < 0 || n_end < n_begin || n_end > w.rows()) {
    fail("matmul: row range [{}, {}) is outside weight {} with {} rows", n_begin, n_end, w.name,
         w.rows());
  }
  if (m < 0) fail("matmul: negative activation row count {} for weight {}", m, w.name);
  const bool empty = m == 0 || n_end == n_begin;
  if (!empty && !w.data) fail("matmul: weight {} has no data", w.name);
  if (!empty && w.nbytes < w.row_stride() * static_cast<size_t>(w.rows())) {
    fail("matmul: weight {} holds {} bytes, {} rows of {} need {}", w.name, w.nbytes, w.rows(),
         w.row_len(), w.row_stride() * static_cast<size_t>(w.rows()));
  }
  if (!empty && (!x || !y)) fail("matmul: null activation or output for weight {}", w.name);
}

// ------------------------------ quantized weights ---------------------------------------

// One product of a quantized matmul: rows [n_begin, n_begin + n) of w into y (row stride n).
struct QuantizedProduct {
  const TensorView* w;
  int64_t n_begin, n;
  float* y;
};

// Every product shares x, the weight type and k: x is quantized once, then all products'
// panels run in one pass over the pool.
void quantized_matmul(std::span<const QuantizedProduct> products, const float* x, int64_t m,
                      ThreadPool& pool) {
  const QuantKernels& kern = matmul_detail::best_quant_kernels();
  const TensorType type = products.front().w->type;
  const int64_t k = products.front().w->row_len();
  const int64_t group_rows = kern.act_group_rows(type);
  const ActLayout layout = matmul_detail::act_layout(type, k, group_rows);
  const int32_t offset = kern.act_offset(type);
  const int64_t groups = (m + group_rows - 1) / group_rows;
  uint8_t* act = activation_scratch().get(layout.group_bytes * static_cast<size_t>(groups));
  pool.parallel_for(groups, [&](int64_t group, int) {
    const int64_t end = std::min(m, (group + 1) * group_rows);
    uint8_t* base = act + static_cast<size_t>(group) * layout.group_bytes;
    for (int64_t r = group * group_rows; r < end; ++r) {
      matmul_detail::quantize_activation_row(layout, offset, x + r * k, base, r - group * group_rows);
    }
  });

  const int64_t panel_rows = kern.panel_rows;
  const size_t panel_bytes = kern.panel_bytes(type, k);
  // Tasks of all products in one list: product i owns tasks [first[i], first[i + 1]).
  std::vector<int64_t> first{0};
  for (const QuantizedProduct& p : products) first.push_back(first.back() + (p.n + panel_rows - 1) / panel_rows);
  pool.parallel_for(first.back(), [&](int64_t task, int) {
    const auto i = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1);
    const QuantizedProduct& p = products[i];
    const int64_t c0 = (task - first[i]) * panel_rows;
    const int64_t cols = std::min(panel_rows, p.n - c0);
    uint8_t* panel = panel_scratch().get(panel_bytes);
    kern.unpack(type, p.w->row(p.n_begin + c0), p.w->row_stride(), cols, k, panel);
    kern.multiply(type, panel, layout, act, m, p.y + c0, p.n, cols);
  });
}

// ------------------------------ floating-point weights ----------------------------------

void use_single_threaded_blas() {
  // Our pool already runs one GEMM per core; OpenBLAS's own threads would oversubscribe.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// Rows of W per task. OpenBLAS re-packs the activations on every call, so panels are large;
// at least 8 tasks keep both cores busy. Depends on the shape only, never the thread count.
int64_t float_panel_rows(int64_t n) { return std::clamp<int64_t>(n / 8 / 16 * 16, 64, 512); }

bool blas_core_is_one_of(std::initializer_list<const char*> names) {
  const std::string core = ascii_lower(openblas_get_corename());
  for (const char* name : names) {
    if (core.find(name) != std::string::npos) return true;
  }
  return false;
}

// Measured on a Sapphire-Rapids-class Xeon: OpenBLAS's AVX-512 SGEMM on converted weights
// beats vdpbf16ps (which issues only every other cycle there) by 1.1-1.5x; with OpenBLAS's
// AVX2 kernels (as on Zen) they tie, and when OpenBLAS falls back to generic kernels (it does
// not recognise some virtualised CPUs) the direct kernel is 2.5x faster.
bool blas_has_avx512_sgemm() {
  static const bool avx512 = blas_core_is_one_of({"skylakex", "cooperlake", "sapphirerapids"});
  return avx512;
}

// Our own f32 kernels (matmul_float.cpp) replace OpenBLAS where it runs a generic x86 core
// (e.g. "Prescott" on a virtual Sapphire Rapids: ~10% of the FMA peak). RUVDLLM_FLOAT_GEMM=
// openblas|own overrides the choice, for benchmarks that compare the two.
const matmul_detail::FloatKernels* chosen_float_kernels() {
  static const bool own = [] {
    const char* forced = std::getenv("RUVDLLM_FLOAT_GEMM");
    const std::string choice = forced ? forced : "auto";
    if (choice == "openblas" || choice == "own") return choice == "own";
    if (choice != "auto") fail("RUVDLLM_FLOAT_GEMM must be auto, openblas or own, not '{}'", choice);
    return !blas_core_is_one_of({"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"});
  }();
  // Looked up per call: the kernels belong to the Highway target chosen now (tests switch it).
  return own ? matmul_detail::float_kernels() : nullptr;
}

// BF16 weights on CPUs with AVX-512 BF16: activations rounded to bf16 once, then vdpbf16ps
// on packed panels of W (the f32 route below converts every weight and runs at FMA speed).
void bf16_matmul(const matmul_detail::Bf16Kernels& kern, const TensorView& w, int64_t n_begin, int64_t n,
                 const float* x, int64_t m, float* y, ThreadPool& pool) {
  const int64_t k = w.row_len(), pairs = (k + 1) / 2, g = kern.group_rows;
  const int64_t groups = (m + g - 1) / g;
  auto* xb = reinterpret_cast<uint16_t*>(activation_scratch().get(static_cast<size_t>(groups * pairs * g * 2) * 2));
  pool.parallel_for(groups, [&](int64_t group, int) {
    uint16_t* out = xb + group * pairs * g * 2;
    for (int64_t lane = 0; lane < g; ++lane) {
      const int64_t r = group * g + lane;
      for (int64_t i = 0; i < pairs * 2; ++i) {
        out[((i / 2) * g + lane) * 2 + i % 2] = r < m && i < k ? f32_to_bf16(x[r * k + i]) : 0;
      }
    }
  });
  const int64_t panel_rows = kern.panel_rows;
  const size_t panel_bytes = kern.panel_bytes(k);
  pool.parallel_for((n + panel_rows - 1) / panel_rows, [&](int64_t task, int) {
    const int64_t c0 = task * panel_rows;
    const int64_t cols = std::min(panel_rows, n - c0);
    uint8_t* panel = panel_scratch().get(panel_bytes);
    kern.unpack(w.row(n_begin + c0), w.row_stride(), cols, k, panel);
    kern.multiply(panel, xb, m, k, y + c0, n, cols);
  });
}

// F32/F16/BF16 weights through our own kernels: x packed once, each panel of weight rows
// converted to f32 (F32 rows are used in place).
void own_float_matmul(const matmul_detail::FloatKernels& kern, const TensorView& w, int64_t n_begin, int64_t n,
                      const float* x, int64_t m, float* y, ThreadPool& pool) {
  const int64_t k = w.row_len(), strips = (m + kern.lanes - 1) / kern.lanes;
  auto* packed = reinterpret_cast<float*>(activation_scratch().get(static_cast<size_t>(strips * k * kern.lanes) * 4));
  pool.parallel_for(strips, [&](int64_t strip, int) { kern.pack_activations(x, m, k, strip, packed); });
  // Small panels: each one's f32 rows (64 × k) stay in L2 while the kernel passes over them
  // once per pair of activation strips.
  constexpr int64_t panel_rows = 64;
  pool.parallel_for((n + panel_rows - 1) / panel_rows, [&](int64_t task, int) {
    const int64_t c0 = task * panel_rows;
    const int64_t cols = std::min(panel_rows, n - c0);
    const uint8_t* rows = w.row(n_begin + c0);
    const float* wf = reinterpret_cast<const float*>(rows);
    int64_t ldw = static_cast<int64_t>(w.row_stride() / sizeof(float));
    if (w.type != TensorType::F32) {
      auto* converted = reinterpret_cast<float*>(panel_scratch().get(static_cast<size_t>(cols * k) * 4));
      for (int64_t c = 0; c < cols; ++c) dequantize_row(w.type, rows + static_cast<size_t>(c) * w.row_stride(), converted + c * k, k);
      wf = converted;
      ldw = k;
    }
    kern.multiply(packed, m, k, wf, ldw, cols, y + c0, n);
  });
}

// The direct BF16 kernels when they are the faster route on this machine, else null. Our own
// f32 kernels, where chosen, beat them (f32 FMA issues twice as often as vdpbf16ps on a
// Sapphire Rapids: 105 against 68 GFLOP/s on one core) and keep x in f32.
const matmul_detail::Bf16Kernels* chosen_bf16_kernels() {
  if (chosen_float_kernels() || blas_has_avx512_sgemm()) return nullptr;
  return matmul_detail::bf16_kernels();
}

void float_matmul(const TensorView& w, int64_t n_begin, int64_t n, const float* x, int64_t m,
                  float* y, ThreadPool& pool) {
  use_single_threaded_blas();
  const int64_t k = w.row_len();
  const int64_t panel_rows = float_panel_rows(n);
  const int64_t tasks = (n + panel_rows - 1) / panel_rows;
  if (const matmul_detail::FloatKernels* own = chosen_float_kernels()) {
    return own_float_matmul(*own, w, n_begin, n, x, m, y, pool);
  }
  if (w.type == TensorType::BF16) {
    if (const matmul_detail::Bf16Kernels* bf16 = chosen_bf16_kernels()) {
      return bf16_matmul(*bf16, w, n_begin, n, x, m, y, pool);
    }
  }
  pool.parallel_for(tasks, [&](int64_t task, int) {
    const int64_t c0 = task * panel_rows;
    const int64_t cols = std::min(panel_rows, n - c0);
    const uint8_t* wrows = w.row(n_begin + c0);
    const float* wf = reinterpret_cast<const float*>(wrows);
    if (w.type != TensorType::F32) {
      auto* converted =
          reinterpret_cast<float*>(panel_scratch().get(static_cast<size_t>(cols * k) * 4));
      for (int64_t c = 0; c < cols; ++c) {
        dequantize_row(w.type, wrows + static_cast<size_t>(c) * w.row_stride(), converted + c * k,
                       k);
      }
      wf = converted;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
                static_cast<blasint>(cols), static_cast<blasint>(k), 1.0f, x,
                static_cast<blasint>(k), wf, static_cast<blasint>(k), 0.0f, y + c0,
                static_cast<blasint>(n));
  });
}

}  // namespace

void matmul_rows(const TensorView& w, int64_t n_begin, int64_t n_end, const float* x, int64_t m,
                 float* y, ThreadPool& pool) {
  check_args(w, n_begin, n_end, x, m, y);
  const int64_t n = n_end - n_begin, k = w.row_len();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(y, y + m * n, 0.0f);
    return;
  }
  if (type_traits(w.type).quantized) {
    const QuantizedProduct product{&w, n_begin, n, y};
    quantized_matmul({&product, 1}, x, m, pool);
  } else {
    float_matmul(w, n_begin, n, x, m, y, pool);
  }
}

void matmul(const TensorView& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  matmul_rows(w, 0, w.rows(), x, m, y, pool);
}

void matmul_shared_input(std::span<const TensorView* const> ws, const float* x, int64_t m,
                         std::span<float* const> ys, ThreadPool& pool) {
  if (ws.size() != ys.size()) {
    fail("matmul_shared_input: {} weights but {} outputs", ws.size(), ys.size());
  }
  if (ws.empty()) return;
  bool shared = m > 0 && type_traits(ws.front()->type).quantized;
  for (size_t i = 0; i < ws.size(); ++i) {
    check_args(*ws[i], 0, ws[i]->rows(), x, m, ys[i]);
    shared = shared && ws[i]->type == ws.front()->type && ws[i]->row_len() == ws.front()->row_len() &&
             ws[i]->rows() > 0 && ws[i]->row_len() > 0;
  }
  if (!shared) {
    for (size_t i = 0; i < ws.size(); ++i) matmul(*ws[i], x, m, ys[i], pool);
    return;
  }
  std::vector<QuantizedProduct> products;
  for (size_t i = 0; i < ws.size(); ++i) products.push_back({ws[i], 0, ws[i]->rows(), ys[i]});
  quantized_matmul(products, x, m, pool);
}

bool bf16_weights_round_activations() { return chosen_bf16_kernels() != nullptr; }

const char* simd_target_name() { return matmul_detail::chosen_target_name(); }

}  // namespace ruvdllm
