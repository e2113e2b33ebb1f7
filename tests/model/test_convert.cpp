// Hugging Face checkpoint → GGUF: the converted file has llama.cpp's names, keys and Q/K row
// order, loads back, and gives the checkpoint's logits (exactly at F32 up to float rounding,
// closely at Q8_0); the tokenizer beside the checkpoint travels into the GGUF.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/half.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/io/safetensors.h"
#include "ruvdllm/kernels/matmul.h"
#include "ruvdllm/model/convert.h"
#include "ruvdllm/model/gguf_metadata.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/model/model.h"
#include "ruvdllm/text/tokenizer.h"
#include "ruvdllm/text/tokenizer_io.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A random Hugging Face checkpoint with the original tensor names and shapes, written from
// scratch (not through GGUF), so the converter's renaming and Q/K permutation are checked
// against the loader's reading of the same checkpoint.
class HfCheckpoint {
 public:
  // stddev: of the matrices. Sharp weights (0.35) make every tensor, and a wrong row order,
  // move the logits measurably; they also make a 2-layer model chaotic enough that Q8_0's
  // rounding swings logits, so quantization checks use milder ones.
  HfCheckpoint(ModelConfig c, TensorType storage, float stddev = 0.35f)
      : c_(std::move(c)), storage_(storage), stddev_(stddev) {}

  void write(const std::string& dir) {
    std::filesystem::create_directories(dir);
    const int64_t E = c_.n_embd, V = c_.vocab_size, D = c_.head_dim, F = c_.n_ff;
    const int64_t q = c_.n_head * D, kv = c_.n_head_kv * D;
    const bool llada = c_.arch == Arch::LLaDA;
    add(llada ? "model.transformer.wte.weight" : "model.embed_tokens.weight", {E, V});
    add(llada ? "model.transformer.ln_f.weight" : "model.norm.weight", {E}, true);
    if (!c_.tied_output) add(llada ? "model.transformer.ff_out.weight" : "lm_head.weight", {E, V});
    for (int64_t il = 0; il < c_.n_layer; ++il) {
      const std::string b = llada ? "model.transformer.blocks." + std::to_string(il) + "."
                                  : "model.layers." + std::to_string(il) + ".";
      const std::string attn = llada ? b : b + "self_attn.";
      add(b + (llada ? "attn_norm.weight" : "input_layernorm.weight"), {E}, true);
      add(attn + "q_proj.weight", {E, q});
      add(attn + "k_proj.weight", {E, kv});
      add(attn + "v_proj.weight", {E, kv});
      if (c_.qkv_bias) {
        add(attn + "q_proj.bias", {q});
        add(attn + "k_proj.bias", {kv});
        add(attn + "v_proj.bias", {kv});
      }
      if (c_.qk_norm) {
        add(attn + "q_norm.weight", {D}, true);
        add(attn + "k_norm.weight", {D}, true);
      }
      add(attn + (llada ? "attn_out.weight" : "o_proj.weight"), {q, E});
      add(b + (llada ? "ff_norm.weight" : "post_attention_layernorm.weight"), {E}, true);
      if (c_.is_moe()) {
        add(b + "mlp.gate.weight", {E, c_.n_expert});
        for (int64_t e = 0; e < c_.n_expert; ++e) {
          const std::string x = b + "mlp.experts." + std::to_string(e) + ".";
          add(x + "gate_proj.weight", {E, c_.n_ff_expert});
          add(x + "up_proj.weight", {E, c_.n_ff_expert});
          add(x + "down_proj.weight", {c_.n_ff_expert, E});
        }
      } else if (llada) {
        add(b + "ff_proj.weight", {E, F});
        add(b + "up_proj.weight", {E, F});
        add(b + "ff_out.weight", {F, E});
      } else {
        add(b + "mlp.gate_proj.weight", {E, F});
        add(b + "mlp.up_proj.weight", {E, F});
        add(b + "mlp.down_proj.weight", {F, E});
      }
    }
    writer_.write(dir + "/model.safetensors");
    write_text(dir + "/config.json", config().dump(2));
  }

 private:
  void add(const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> values = testing::random_normal(static_cast<size_t>(n), ++seed_, norm ? 0.1f : stddev_);
    if (norm) {
      for (float& v : values) v += 1.0f;
    }
    auto& bytes = buffers_.emplace_back(static_cast<size_t>(n) * (storage_ == TensorType::BF16 ? 2 : 4));
    if (storage_ == TensorType::BF16) {
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(values[static_cast<size_t>(i)]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    } else {
      std::memcpy(bytes.data(), values.data(), bytes.size());
    }
    writer_.add_tensor(name, storage_, std::move(shape), bytes.data(), bytes.size());
  }

  json config() const {
    if (c_.arch == Arch::LLaDA) {
      return {{"architectures", {"LLaDAModelLM"}}, {"model_type", "llada"}, {"d_model", c_.n_embd},
              {"n_layers", c_.n_layer}, {"n_heads", c_.n_head}, {"n_kv_heads", c_.n_head_kv},
              {"mlp_hidden_size", c_.n_ff}, {"vocab_size", c_.vocab_size}, {"embedding_size", c_.vocab_size},
              {"max_sequence_length", c_.context_length}, {"rope_theta", c_.rope_base},
              {"rms_norm_eps", c_.rms_eps}, {"weight_tying", c_.tied_output}, {"activation_type", "silu"},
              {"include_qkv_bias", c_.qkv_bias}, {"mask_token_id", c_.mask_token_id},
              {"eos_token_id", c_.eos_token_id}};
    }
    json j = {{"hidden_size", c_.n_embd}, {"num_hidden_layers", c_.n_layer},
              {"num_attention_heads", c_.n_head}, {"num_key_value_heads", c_.n_head_kv},
              {"intermediate_size", c_.n_ff}, {"vocab_size", c_.vocab_size},
              {"max_position_embeddings", c_.context_length}, {"rope_theta", c_.rope_base},
              {"rms_norm_eps", c_.rms_eps}, {"tie_word_embeddings", c_.tied_output}, {"hidden_act", "silu"},
              {"mask_token_id", c_.mask_token_id}, {"bos_token_id", c_.bos_token_id},
              {"eos_token_id", c_.eos_token_id}};
    switch (c_.arch) {
      case Arch::Dream:
        j["architectures"] = {"DreamModel"};
        j["model_type"] = "Dream";
        break;
      case Arch::Llama:
        j["architectures"] = {"LlamaForCausalLM"};
        j["model_type"] = "llama";
        j["attention_bias"] = c_.qkv_bias;
        break;
      case Arch::LLaDAMoE:
        j["architectures"] = {"LLaDAMoEModelLM"};
        j["model_type"] = "lladamoe";
        j["num_experts"] = c_.n_expert;
        j["num_experts_per_tok"] = c_.n_expert_used;
        j["expert_intermediate_size"] = c_.n_ff_expert;
        j["norm_topk_prob"] = c_.expert_weights_norm;
        j["qk_layernorm"] = true;
        break;
      default:
        ADD_FAILURE() << "no config.json for " << arch_name(c_.arch);
    }
    return j;
  }

  ModelConfig c_;
  TensorType storage_;
  float stddev_;
  uint64_t seed_ = 100;
  SafetensorsWriter writer_;
  std::deque<std::vector<uint8_t>> buffers_;
};

const std::vector<int32_t> kTokens = {5, 17, 299, 42, 0, 298, 120, 7, 64, 250, 33, 299, 1};

std::vector<float> logits_of(Model& model) {
  ThreadPool pool(2);
  std::vector<float> logits(kTokens.size() * static_cast<size_t>(model.config().vocab_size));
  model.forward(kTokens, ForwardOptions{}, logits.data(), pool);
  return logits;
}

// Largest |a − b| relative to the largest |b|: logits near zero make per-element ratios noisy.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double scale = 0;
  for (float v : b) scale = std::max(scale, static_cast<double>(std::abs(v)));
  return testing::compare(a.data(), b.data(), std::min(a.size(), b.size())).max_abs / scale;
}

constexpr float kMildStd = 0.04f;

struct Case {
  const char* label;
  ModelConfig config;
  TensorType storage;
};

std::vector<Case> cases() {
  ModelConfig llama = shape_config(Arch::LLaDA, "test");
  llama.arch = Arch::Llama;
  llama.qkv_bias = true;  // llama.cpp permutes Q/K biases along with the rows
  llama.causal = true;
  ModelConfig tied_llada = shape_config(Arch::LLaDA, "test");
  tied_llada.tied_output = true;
  return {{"llada (bf16 checkpoint)", shape_config(Arch::LLaDA, "test"), TensorType::BF16},
          {"llada tied", tied_llada, TensorType::F32},
          {"dream", shape_config(Arch::Dream, "test"), TensorType::F32},
          {"llada-moe", shape_config(Arch::LLaDAMoE, "test"), TensorType::F32},
          {"llama with q/k bias", llama, TensorType::F32}};
}

TEST(Convert, F32GgufGivesTheCheckpointsLogits) {
  testing::TempDir dir;
  ThreadPool pool(2);
  for (const Case& k : cases()) {
    SCOPED_TRACE(k.label);
    const std::string hf = dir.file("hf");
    std::filesystem::remove_all(hf);
    HfCheckpoint(k.config, k.storage).write(hf);
    auto source = Model::load(hf);
    const std::vector<float> expected = logits_of(*source);
    const std::string out = dir.file("f32.gguf");
    write_gguf(*source, out, TensorType::F32, pool);

    auto converted = Model::load(out);
    EXPECT_EQ(converted->format(), "gguf");
    EXPECT_EQ(converted->config().arch, k.config.arch);
    EXPECT_EQ(converted->config().rope_order, gguf_rope_order(k.config.arch));
    EXPECT_EQ(converted->config().tied_output, k.config.tied_output);
    EXPECT_EQ(converted->config().mask_token_id, source->config().mask_token_id);
    // A BF16 checkpoint may run on the AVX-512 BF16 kernel, whose bf16 activations move each
    // product by up to 2^-9 (1.7e-2 of this model's logits, measured); its F32 copy multiplies in
    // f32. Every other case computes the same f32 math on both sides.
    const bool rounded = k.storage == TensorType::BF16 && bf16_weights_round_activations();
    EXPECT_LE(relative_error(logits_of(*converted), expected), rounded ? 5e-2 : 1e-5);

    // llama.cpp's names, every tensor F32.
    const GgufFile gguf = GgufFile::open(out);
    EXPECT_EQ(gguf.get_string("general.architecture"), arch_name(k.config.arch));
    ASSERT_NE(gguf.find_tensor("blk.1.attn_q.weight"), nullptr);
    EXPECT_EQ(gguf.find_tensor("output.weight") != nullptr, !k.config.tied_output);
    for (const TensorView& t : gguf.tensors()) EXPECT_EQ(t.type, TensorType::F32) << t.name;
    if (k.config.is_moe()) {
      const TensorView* experts = gguf.find_tensor("blk.0.ffn_down_exps.weight");
      ASSERT_NE(experts, nullptr);
      EXPECT_EQ(experts->shape, (std::vector<int64_t>{k.config.n_ff_expert, k.config.n_embd, k.config.n_expert}));
    }
  }
}

// Without the Q/K permutation a LLaDA GGUF would compute something else: the check above
// would catch a converter that forgot it only if the order matters, which this confirms.
TEST(Convert, QkRowOrderMattersForLLaDA) {
  testing::TempDir dir;
  ThreadPool pool(2);
  const std::string hf = dir.file("hf");
  HfCheckpoint(shape_config(Arch::LLaDA, "test"), TensorType::F32).write(hf);
  auto source = Model::load(hf);
  const std::string out = dir.file("m.gguf");
  write_gguf(*source, out, TensorType::F32, pool);
  const GgufFile gguf = GgufFile::open(out);
  const TensorView* wq = gguf.find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(wq, nullptr);
  const TensorView& hf_wq = source->weights().layers[0].wq;
  // Row 1 of head 0 in llama.cpp's order is Hugging Face's row head_dim / 2.
  const int64_t half = source->config().head_dim / 2;
  EXPECT_EQ(0, std::memcmp(wq->row(1), hf_wq.row(half), wq->row_stride()));
  EXPECT_NE(0, std::memcmp(wq->row(1), hf_wq.row(1), wq->row_stride()));
  EXPECT_EQ(0, std::memcmp(wq->row(0), hf_wq.row(0), wq->row_stride()));
}

TEST(Convert, Q8GgufIsCloseAndFallsBackWhereRowsDoNotFit) {
  testing::TempDir dir;
  ThreadPool pool(2);
  for (const Case& k : cases()) {
    SCOPED_TRACE(k.label);
    const std::string hf = dir.file("hf");
    std::filesystem::remove_all(hf);
    HfCheckpoint(k.config, k.storage, kMildStd).write(hf);
    auto source = Model::load(hf);
    const std::vector<float> expected = logits_of(*source);
    const std::string out = dir.file("q8.gguf");
    write_gguf(*source, out, TensorType::Q8_0, pool);
    const double err = relative_error(logits_of(*Model::load(out)), expected);
    // Q8_0 weights times Q8_0-quantized activations: about 1% here, 0.1–0.5% per matmul.
    EXPECT_LE(err, 0.05);
    std::printf("%s: q8_0 logits within %.2g of the largest\n", k.label, err);
    EXPECT_GT(err, 0.0);  // the weights really were quantized

    const GgufFile gguf = GgufFile::open(out);
    EXPECT_EQ(gguf.get_int("general.file_type", -1), 7);
    // Exactly the bytes quantizing the F32 conversion gives: the rows reach the quantizer
    // already in llama.cpp's order, with nothing lost on the way.
    write_gguf(*source, dir.file("f32.gguf"), TensorType::F32, pool);
    write_gguf(*Model::load(dir.file("f32.gguf")), dir.file("q8-via-f32.gguf"), TensorType::Q8_0, pool);
    const GgufFile via_f32 = GgufFile::open(dir.file("q8-via-f32.gguf"));
    ASSERT_EQ(via_f32.tensors().size(), gguf.tensors().size());
    for (size_t i = 0; i < gguf.tensors().size(); ++i) {
      const TensorView& a = gguf.tensors()[i];
      const TensorView& b = via_f32.tensors()[i];
      ASSERT_EQ(a.name, b.name);
      ASSERT_EQ(a.nbytes, b.nbytes) << a.name;
      EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes)) << a.name;
    }
    EXPECT_EQ(gguf.find_tensor("blk.0.attn_norm.weight")->type, TensorType::F32);
    EXPECT_EQ(gguf.find_tensor("token_embd.weight")->type, TensorType::Q8_0);
    if (k.config.is_moe()) {
      EXPECT_EQ(gguf.find_tensor("blk.0.ffn_gate_inp.weight")->type, TensorType::F32);
    }
  }
  // Rows of 64 cannot hold Q4_K's 256-element blocks: those matrices fall back to Q8_0.
  const std::string hf = dir.file("hf");
  std::filesystem::remove_all(hf);
  HfCheckpoint(shape_config(Arch::Dream, "test"), TensorType::F32).write(hf);
  auto source = Model::load(hf);
  std::vector<std::string> fallbacks;
  ConvertOptions options;
  options.on_fallback = [&fallbacks](const std::string& name, TensorType used) {
    EXPECT_EQ(used, TensorType::Q8_0) << name;
    fallbacks.push_back(name);
  };
  write_gguf(*source, dir.file("q4k.gguf"), TensorType::Q4_K, pool, options);
  EXPECT_FALSE(fallbacks.empty());
  const GgufFile gguf = GgufFile::open(dir.file("q4k.gguf"));
  EXPECT_EQ(gguf.find_tensor("blk.0.attn_q.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(gguf.find_tensor("blk.0.attn_q.bias")->type, TensorType::F32);
}

TEST(Convert, TokenizerAndNameComeThroughTheCallback) {
  testing::TempDir dir;
  ThreadPool pool(2);
  const ModelConfig c = shape_config(Arch::LLaDA, "test");
  // A vocabulary to carry: the placeholder one random models get, as tokenizer.json.
  InitOptions init;
  write_random_model(c, init, dir.file("vocab.gguf"));
  const Tokenizer tokenizer = Tokenizer::from_gguf_file(dir.file("vocab.gguf"));
  const std::string hf = dir.file("hf");
  HfCheckpoint(c, TensorType::F32).write(hf);
  write_text(hf + "/tokenizer.json", tokenizer_to_json(tokenizer));

  auto source = Model::load(hf);
  ConvertOptions options;
  options.model_name = "tiny llada";
  options.extra_metadata = [&tokenizer](GgufWriter& w) { write_tokenizer_metadata(tokenizer, w); };
  size_t calls = 0, last_total = 0;
  options.progress = [&](size_t done, size_t total) {
    ++calls;
    EXPECT_EQ(done, calls);
    last_total = total;
  };
  const std::string out = dir.file("tok.gguf");
  write_gguf(*source, out, TensorType::F16, pool, options);
  EXPECT_EQ(calls, last_total);
  EXPECT_GT(calls, 10u);

  EXPECT_EQ(GgufFile::open(out).get_string("general.name"), "tiny llada");
  const Tokenizer back = Tokenizer::from_gguf_file(out);
  EXPECT_EQ(back.vocab_size(), tokenizer.vocab_size());
  EXPECT_EQ(back.mask_id(), tokenizer.mask_id());
  const std::string text = "hello, converted world";
  EXPECT_EQ(back.encode(text), tokenizer.encode(text));
  auto converted = Model::load(out);
  EXPECT_EQ(converted->vocab().tokens, source->vocab().tokens);
  EXPECT_EQ(converted->config().mask_token_id, c.mask_token_id);
}

TEST(Convert, RejectsWeightTypesItCannotStore) {
  testing::TempDir dir;
  ThreadPool pool(1);
  const std::string hf = dir.file("hf");
  HfCheckpoint(shape_config(Arch::LLaDA, "test"), TensorType::F32).write(hf);
  auto source = Model::load(hf);
  const std::string out = dir.file("bad.gguf");
  EXPECT_THROW(write_gguf(*source, out, TensorType::Q8_K, pool), Error);
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace ruvdllm
