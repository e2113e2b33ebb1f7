// `ruvdllm quantize IN OUT --type T`: re-encode a GGUF model's weight matrices.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/quant.h"

namespace ruvdllm::cli {
namespace {

struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string type;
  int threads = 0;
};

// llama.cpp's general.file_type numbers, so other GGUF tools label the file correctly.
int64_t file_type_id(TensorType t) {
  switch (t) {
    case TensorType::F32: return 0;
    case TensorType::F16: return 1;
    case TensorType::Q4_0: return 2;
    case TensorType::Q8_0: return 7;
    case TensorType::Q4_K: return 15;  // Q4_K_M
    case TensorType::Q5_K: return 17;  // Q5_K_M
    case TensorType::Q6_K: return 18;
    case TensorType::BF16: return 32;
    default: return 0;
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Norms, biases and the MoE router stay F32 (tiny, and precision-sensitive); matrices whose
// rows do not fit the block size fall back to the nearest type that fits, as llama.cpp does.
TensorType target_type(const TensorView& t, TensorType requested) {
  const bool matrix = t.dims() >= 2 && ends_with(t.name, ".weight") &&
                      t.name.find("norm") == std::string::npos &&
                      t.name.find("ffn_gate_inp") == std::string::npos;
  if (!matrix) return t.type;
  for (TensorType candidate : {requested, TensorType::Q8_0, TensorType::F16}) {
    if (t.row_len() % type_traits(candidate).block_size == 0) {
      if (candidate != requested) {
        std::fprintf(stderr, "note: %s has rows of %ld, not a multiple of %s's block; using %s\n",
                     t.name.c_str(), static_cast<long>(t.row_len()), type_name(requested), type_name(candidate));
      }
      return candidate;
    }
  }
  return t.type;
}

void convert_rows(const TensorView& src, TensorType dst_type, void* dst, ThreadPool& pool) {
  const int64_t rows = src.rows();
  const int64_t n = src.row_len();
  const size_t src_stride = src.row_stride();
  const size_t dst_stride = row_bytes(dst_type, n);
  constexpr int64_t kRowsPerTask = 16;
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()), std::vector<float>(static_cast<size_t>(n)));
  pool.parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int thread) {
    float* row = scratch[static_cast<size_t>(thread)].data();
    const int64_t end = std::min(rows, (task + 1) * kRowsPerTask);
    for (int64_t r = task * kRowsPerTask; r < end; ++r) {
      dequantize_row(src.type, static_cast<const uint8_t*>(src.data) + static_cast<size_t>(r) * src_stride, row, n);
      quantize_row(dst_type, row, static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * dst_stride, n);
    }
  });
}

void run_quantize(const QuantizeArgs& args) {
  const auto type = type_from_name(args.type);
  if (!type || *type == TensorType::Q8_K) {
    fail("--type: unknown tensor type '{}' (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K)", args.type);
  }
  if (args.input == args.output) fail("output must differ from input ({})", args.input);
  if (!ends_with(args.input, ".gguf")) {
    fail("{}: quantize reads GGUF files (Hugging Face checkpoints are not converted yet)", args.input);
  }
  const GgufFile in = GgufFile::open(args.input);
  ThreadPool pool(args.threads);
  GgufWriter out;
  out.set_alignment(in.alignment());
  for (const auto& [key, value] : in.metadata()) {
    if (key != "general.alignment") out.set(key, value);
  }
  out.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(file_type_id(*type))));
  out.set("general.quantized_by", GgufValue::string("ruvdllm"));
  size_t bytes_in = 0, bytes_out = 0;
  for (const TensorView& t : in.tensors()) {
    const TensorType dst = target_type(t, *type);
    bytes_in += t.nbytes;
    bytes_out += row_bytes(dst, t.row_len()) * static_cast<size_t>(t.rows());
    if (dst == t.type) {
      out.add_tensor(t);
    } else {
      TensorView src = t;
      out.add_tensor_lazy(t.name, dst, t.shape, [src, dst, &pool](void* d) { convert_rows(src, dst, d, pool); });
    }
  }
  ProgressBar bar("quantize");
  out.write(args.output, [&](size_t done, size_t total) {
    bar.update(static_cast<int64_t>(done), static_cast<int64_t>(total));
  });
  bar.finish();
  std::fprintf(stderr, "wrote %s: %s -> %s (%s)\n", args.output.c_str(), human_bytes(static_cast<double>(bytes_in)).c_str(),
               human_bytes(static_cast<double>(bytes_out)).c_str(), type_name(*type));
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "Convert a GGUF model's weights to another tensor type");
  cmd->add_option("input", args->input, "Input .gguf")->required();
  cmd->add_option("output", args->output, "Output .gguf")->required();
  cmd->add_option("--type", args->type, "f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K")->required();
  cmd->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
  cmd->callback([args] { run_quantize(*args); });
}

}  // namespace ruvdllm::cli
