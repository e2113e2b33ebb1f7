// `ruvdllm quantize IN OUT --type T`: re-encode a GGUF model's weight matrices, or convert a
// Hugging Face checkpoint (directory, .safetensors or index.json) to GGUF in llama.cpp's layout.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/progress.h"
#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/kernels/quant.h"
#include "ruvdllm/model/convert.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/text/tokenizer_io.h"

namespace ruvdllm::cli {
namespace {

struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string type;
  int threads = 0;
};

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

// Re-encodes a GGUF file tensor by tensor, keeping every metadata key as it is.
void quantize_gguf(const QuantizeArgs& args, TensorType type) {
  const GgufFile in = GgufFile::open(args.input);
  ThreadPool pool(args.threads);
  GgufWriter out;
  out.set_alignment(in.alignment());
  for (const auto& [key, value] : in.metadata()) {
    if (key != "general.alignment") out.set(key, value);
  }
  out.set("general.file_type", GgufValue::u32(gguf_file_type(type)));
  out.set("general.quantized_by", GgufValue::string("ruvdllm"));
  size_t bytes_in = 0, bytes_out = 0;
  for (const TensorView& t : in.tensors()) {
    const TensorType dst = target_type(t, type);
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
               human_bytes(static_cast<double>(bytes_out)).c_str(), type_name(type));
}

// tokenizer.json sits in the checkpoint directory (beside the weights for a file input).
std::optional<Tokenizer> checkpoint_tokenizer(const std::string& input) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::is_directory(input, ec) ? fs::path(input) : fs::path(input).parent_path();
  const fs::path path = (dir.empty() ? fs::path(".") : dir) / "tokenizer.json";
  if (!fs::exists(path, ec)) return std::nullopt;
  return Tokenizer::from_tokenizer_json(path.string());
}

// Converts a Hugging Face checkpoint: llama.cpp's keys, tensor names and Q/K row order.
void convert_checkpoint(const QuantizeArgs& args, TensorType type) {
  namespace fs = std::filesystem;
  const std::unique_ptr<Model> model = Model::load(args.input);
  const ModelConfig& c = model->config();
  const std::optional<Tokenizer> tokenizer = checkpoint_tokenizer(args.input);
  if (tokenizer) {
    if (tokenizer->vocab_size() > c.vocab_size) {
      fail("{}: the tokenizer's {} tokens do not fit the model's vocabulary of {}", args.input,
           tokenizer->vocab_size(), c.vocab_size);
    }
    const std::optional<int32_t> mask = tokenizer->mask_id();
    if (mask && c.mask_token_id >= 0 && *mask != c.mask_token_id) {
      fail("{}: the tokenizer's mask token {} differs from config.json's {}", args.input, *mask, c.mask_token_id);
    }
  } else {
    std::fprintf(stderr, "note: %s has no tokenizer.json; the GGUF will have no vocabulary\n", args.input.c_str());
  }
  ThreadPool pool(args.threads);
  ConvertOptions options;
  // Checkpoints are named by their directory ("LLaDA-8B-Instruct"), not their weight files.
  std::error_code ec;
  fs::path named = fs::path(args.input).lexically_normal();
  if (!fs::is_directory(named, ec) || !named.has_filename()) named = named.parent_path();
  options.model_name = named.filename().string();
  if (tokenizer) options.extra_metadata = [&tokenizer](GgufWriter& w) { write_tokenizer_metadata(*tokenizer, w); };
  options.on_fallback = [type](const std::string& name, TensorType used) {
    std::fprintf(stderr, "note: %s has rows that %s's block does not divide; using %s\n", name.c_str(), type_name(type),
                 type_name(used));
  };
  ProgressBar bar("convert");
  options.progress = [&bar](size_t done, size_t total) {
    bar.update(static_cast<int64_t>(done), static_cast<int64_t>(total));
  };
  write_gguf(*model, args.output, type, pool, options);
  bar.finish();
  std::fprintf(stderr, "wrote %s: %s %s (%s)\n", args.output.c_str(), arch_name(c.arch),
               human_bytes(static_cast<double>(fs::file_size(args.output))).c_str(), type_name(type));
}

void run_quantize(const QuantizeArgs& args) {
  const auto type = type_from_name(args.type);
  if (!type || *type == TensorType::Q8_K) {
    fail("--type: unknown tensor type '{}' (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K)", args.type);
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  if (args.input == args.output || fs::equivalent(args.input, args.output, ec)) {
    fail("output must differ from input ({})", args.input);
  }
  if (ends_with(args.input, ".gguf")) {
    quantize_gguf(args, *type);
  } else {
    convert_checkpoint(args, *type);
  }
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Convert a GGUF model or a Hugging Face checkpoint to a GGUF of another tensor type");
  cmd->add_option("input", args->input, "Input .gguf, Hugging Face directory, .safetensors or index.json")->required();
  cmd->add_option("output", args->output, "Output .gguf")->required();
  cmd->add_option("--type", args->type, "f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K")->required();
  cmd->add_option("-t,--threads", args->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
  cmd->callback([args] { run_quantize(*args); });
}

}  // namespace ruvdllm::cli
