// Loading: the same weights as GGUF (llama.cpp's layout) and as a Hugging Face checkpoint
// (config.json + safetensors with the original names and unpermuted Q/K) give the same logits;
// broken files fail with an Error naming the file and what is wrong.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ruvdllm/core/error.h"
#include "ruvdllm/core/thread_pool.h"
#include "ruvdllm/io/gguf.h"
#include "ruvdllm/io/safetensors.h"
#include "ruvdllm/model/init.h"
#include "ruvdllm/model/model.h"
#include "test_util.h"

namespace ruvdllm {
namespace {

using nlohmann::json;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string write_model(const testing::TempDir& dir, const std::string& name, ModelConfig c,
                        TensorType type = TensorType::F32) {
  InitOptions o;
  o.type = type;
  o.seed = 3;
  o.init_std = 0.25f;
  const std::string path = dir.file(name);
  write_random_model(c, o, path);
  return path;
}

std::vector<float> logits_of(const std::string& path, const std::vector<int32_t>& tokens) {
  auto model = Model::load(path);
  ThreadPool pool(2);
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model->config().vocab_size));
  model->forward(tokens, ForwardOptions{}, logits.data(), pool);
  return logits;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return testing::compare(a.data(), b.data(), std::min(a.size(), b.size())).max_abs;
}

const std::vector<int32_t> kTokens = {5, 17, 299, 42, 0, 298, 120, 7, 64, 250, 33};

// Writes the weights of a GGUF model as a Hugging Face checkpoint in `dir`: the original
// tensor names, and for LLaDA/Llama the Q/K rows put back in the order llama.cpp's converter
// permuted them from (convert_hf_to_gguf.py, LLaDAModel.permute / LlamaModel.permute).
class HfExport {
 public:
  HfExport(const std::string& gguf_path, const ModelConfig& c) : gguf_(GgufFile::open(gguf_path)), c_(c) {}

  bool unpermute = true;   // false writes llama.cpp's permuted rows (wrong for HF)
  bool tied = false;       // leave out the output head and declare tied weights
  std::string skip;        // a tensor to leave out
  std::map<std::string, std::string> rename;  // HF name -> replacement name

  void write(const std::string& dir, int shards = 1) {
    std::vector<std::pair<std::string, TensorView>> out;
    for (const TensorView& t : gguf_.tensors()) {
      if (tied && t.name == "output.weight") continue;
      for (auto& [name, view] : hf_tensors(t)) {
        if (name == skip) continue;
        if (auto it = rename.find(name); it != rename.end()) name = it->second;
        view.name = name;
        out.emplace_back(name, view);
      }
    }
    std::vector<SafetensorsWriter> writers(static_cast<size_t>(shards));
    json weight_map = json::object();
    for (size_t i = 0; i < out.size(); ++i) {
      const size_t shard = i * static_cast<size_t>(shards) / out.size();
      writers[shard].add_tensor(out[i].second);
      weight_map[out[i].first] = shard_name(shard, shards);
    }
    for (int s = 0; s < shards; ++s) writers[static_cast<size_t>(s)].write(dir + "/" + shard_name(static_cast<size_t>(s), shards));
    if (shards > 1) write_text(dir + "/model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());
    write_text(dir + "/config.json", config().dump(2));
    write_tokenizer(dir);
  }

 private:
  static std::string shard_name(size_t shard, int shards) {
    if (shards == 1) return "model.safetensors";
    return "model-0000" + std::to_string(shard + 1) + "-of-0000" + std::to_string(shards) + ".safetensors";
  }

  bool llada() const { return c_.arch == Arch::LLaDA; }

  std::vector<std::pair<std::string, TensorView>> hf_tensors(const TensorView& t) {
    const std::string& g = t.name;
    if (g == "token_embd.weight") return {{llada() ? "model.transformer.wte.weight" : "model.embed_tokens.weight", t}};
    if (g == "output_norm.weight") return {{llada() ? "model.transformer.ln_f.weight" : "model.norm.weight", t}};
    if (g == "output.weight") return {{llada() ? "model.transformer.ff_out.weight" : "lm_head.weight", t}};
    const size_t dot = g.find('.', 4);
    const std::string layer = g.substr(4, dot - 4);
    const std::string rest = g.substr(dot + 1);
    const std::map<std::string, std::string> llada_names = {
        {"attn_norm.weight", "attn_norm.weight"}, {"attn_q.weight", "q_proj.weight"}, {"attn_k.weight", "k_proj.weight"},
        {"attn_v.weight", "v_proj.weight"},       {"attn_output.weight", "attn_out.weight"},
        {"ffn_norm.weight", "ff_norm.weight"},    {"ffn_gate.weight", "ff_proj.weight"},
        {"ffn_up.weight", "up_proj.weight"},      {"ffn_down.weight", "ff_out.weight"}};
    const std::map<std::string, std::string> standard_names = {
        {"attn_norm.weight", "input_layernorm.weight"}, {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},   {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},       {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.bias", "self_attn.v_proj.bias"},       {"attn_output.weight", "self_attn.o_proj.weight"},
        {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},        {"ffn_down.weight", "mlp.down_proj.weight"},
        {"ffn_gate_inp.weight", "mlp.gate.weight"}};
    if (rest.find("_exps.weight") != std::string::npos) {
      const std::string proj = rest.substr(4, rest.find("_exps") - 4);  // gate, up, down
      std::vector<std::pair<std::string, TensorView>> experts;
      for (int64_t e = 0; e < t.ne(2); ++e) {
        experts.emplace_back("model.layers." + layer + ".mlp.experts." + std::to_string(e) + "." + proj + "_proj.weight",
                             t.matrix(e));
      }
      return experts;
    }
    const auto& names = llada() ? llada_names : standard_names;
    const std::string prefix = llada() ? "model.transformer.blocks." + layer + "." : "model.layers." + layer + ".";
    TensorView view = t;
    const bool permuted = c_.arch == Arch::LLaDA || c_.arch == Arch::Llama;
    if (permuted && unpermute && (rest == "attn_q.weight" || rest == "attn_k.weight")) {
      view = unpermuted(t, rest == "attn_q.weight" ? c_.n_head : c_.n_head_kv);
    }
    return {{prefix + names.at(rest), view}};
  }

  // GGUF row (head h, 2i + j) holds HF row (head h, j * D/2 + i).
  TensorView unpermuted(const TensorView& t, int64_t heads) {
    const int64_t D = t.rows() / heads;
    const size_t stride = t.row_stride();
    auto& bytes = buffers_.emplace_back(t.nbytes);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < D / 2; ++i) {
        for (int64_t j = 0; j < 2; ++j) {
          const int64_t gguf_row = h * D + 2 * i + j;
          const int64_t hf_row = h * D + j * (D / 2) + i;
          std::memcpy(bytes.data() + hf_row * stride, t.row(gguf_row), stride);
        }
      }
    }
    TensorView v = t;
    v.data = bytes.data();
    return v;
  }

  json config() const {
    json j;
    if (llada()) {
      j = {{"architectures", {"LLaDAModelLM"}}, {"model_type", "llada"}, {"d_model", c_.n_embd},
           {"n_layers", c_.n_layer},            {"n_heads", c_.n_head},  {"n_kv_heads", c_.n_head_kv},
           {"mlp_hidden_size", c_.n_ff},        {"vocab_size", c_.vocab_size}, {"embedding_size", c_.vocab_size},
           {"max_sequence_length", c_.context_length}, {"rope_theta", c_.rope_base}, {"rms_norm_eps", c_.rms_eps},
           {"weight_tying", tied},              {"activation_type", "silu"}, {"include_bias", false},
           {"include_qkv_bias", false},         {"eos_token_id", c_.eos_token_id}};
      return j;  // no mask_token_id: found through tokenizer.json's <|mdm_mask|>
    }
    j = {{"hidden_size", c_.n_embd},
         {"num_hidden_layers", c_.n_layer},
         {"num_attention_heads", c_.n_head},
         {"num_key_value_heads", c_.n_head_kv},
         {"intermediate_size", c_.n_ff},
         {"vocab_size", c_.vocab_size},
         {"max_position_embeddings", c_.context_length},
         {"rope_theta", c_.rope_base},
         {"rms_norm_eps", c_.rms_eps},
         {"tie_word_embeddings", tied},
         {"hidden_act", "silu"},
         {"rope_scaling", nullptr},
         {"mask_token_id", c_.mask_token_id},
         {"bos_token_id", c_.bos_token_id},
         {"eos_token_id", c_.eos_token_id}};
    if (c_.arch == Arch::Dream) {
      j["architectures"] = {"DreamModel"};
      j["model_type"] = "Dream";
    } else if (c_.arch == Arch::Qwen2) {
      j["architectures"] = {"Qwen2ForCausalLM"};
      j["model_type"] = "qwen2";
    } else if (c_.arch == Arch::Llama) {
      j["architectures"] = {"LlamaForCausalLM"};
      j["model_type"] = "llama";
      j["attention_bias"] = false;
    } else {
      j["architectures"] = {"LLaDAMoEModelLM"};
      j["model_type"] = "lladamoe";
      j["num_experts"] = c_.n_expert;
      j["num_experts_per_tok"] = c_.n_expert_used;
      j["expert_intermediate_size"] = c_.n_ff_expert;
      j["norm_topk_prob"] = c_.expert_weights_norm;
      j["qk_layernorm"] = true;
      j["moe_layer_freq"] = std::vector<int>(static_cast<size_t>(c_.n_layer), 1);
    }
    return j;
  }

  void write_tokenizer(const std::string& dir) const {
    const auto& tokens = gguf_.find("tokenizer.ggml.tokens")->as_string_array();
    json vocab = json::object();
    json added = json::array();
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i].rfind("<|", 0) == 0 && i >= 256) {
        added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
      } else {
        vocab[tokens[i]] = i;
      }
    }
    const json t = {{"version", "1.0"},
                    {"added_tokens", added},
                    {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "ab c"}}}}};
    write_text(dir + "/tokenizer.json", t.dump());
    write_text(dir + "/tokenizer_config.json", json{{"chat_template", "{{ messages }}"}}.dump());
  }

  GgufFile gguf_;
  ModelConfig c_;
  std::deque<std::vector<uint8_t>> buffers_;
};

TEST(Loader, SafetensorsCopiesGiveTheGgufLogits) {
  testing::TempDir dir;
  for (Arch arch : {Arch::LLaDA, Arch::Dream, Arch::LLaDAMoE, Arch::Llama, Arch::Qwen2}) {
    const ModelConfig c = shape_config(arch, "test");
    const std::string gguf = write_model(dir, std::string(arch_name(arch)) + ".gguf", c);
    const std::string hf = dir.file(std::string(arch_name(arch)) + "-hf");
    std::filesystem::create_directory(hf);
    HfExport(gguf, c).write(hf);
    const auto expected = logits_of(gguf, kTokens);
    EXPECT_LE(max_diff(logits_of(hf, kTokens), expected), 1e-4) << arch_name(arch);
    EXPECT_LE(max_diff(logits_of(hf + "/model.safetensors", kTokens), expected), 1e-4) << arch_name(arch);

    const std::string sharded = hf + "-sharded";
    std::filesystem::create_directory(sharded);
    HfExport(gguf, c).write(sharded, 2);
    EXPECT_LE(max_diff(logits_of(sharded, kTokens), expected), 1e-4) << arch_name(arch);
    EXPECT_LE(max_diff(logits_of(sharded + "/model.safetensors.index.json", kTokens), expected), 1e-4);

    auto model = Model::load(hf);
    EXPECT_EQ(model->format(), "safetensors");
    EXPECT_EQ(model->config().arch, arch);
    EXPECT_EQ(model->config().rope_order, RopeOrder::NeoX);  // HF order for every architecture
    EXPECT_EQ(model->config().shift_logits, arch == Arch::Dream);
    EXPECT_EQ(model->config().causal, arch == Arch::Llama || arch == Arch::Qwen2);
    EXPECT_EQ(model->config().mask_token_id, c.mask_token_id);
    EXPECT_EQ(model->all_tensors().size(), Model::load(sharded)->all_tensors().size());
  }
}

TEST(Loader, HalfPrecisionSafetensorsMatchTheSameGguf) {
  for (TensorType type : {TensorType::F16, TensorType::BF16}) {
    testing::TempDir dir;
    const ModelConfig c = shape_config(Arch::Dream, "test");
    const std::string gguf = write_model(dir, "half.gguf", c, type);
    HfExport(gguf, c).write(dir.path());
    auto model = Model::load(dir.path());
    EXPECT_EQ(model->weights().layers[0].wq.type, type);  // used in place, not converted
    EXPECT_LE(max_diff(logits_of(dir.path(), kTokens), logits_of(gguf, kTokens)), 1e-4) << type_name(type);
  }
}

TEST(Loader, PermutationMattersForLLaDA) {
  // Without undoing llama.cpp's Q/K permutation the HF checkpoint computes something else, so
  // the equality above really checks the RoPE order handling.
  testing::TempDir dir;
  const ModelConfig c = shape_config(Arch::LLaDA, "test");
  const std::string gguf = write_model(dir, "m.gguf", c);
  HfExport wrong(gguf, c);
  wrong.unpermute = false;
  wrong.write(dir.path());
  EXPECT_GT(max_diff(logits_of(dir.path(), kTokens), logits_of(gguf, kTokens)), 1e-2);
}

TEST(Loader, TiedOutputUsesTheEmbedding) {
  testing::TempDir dir;
  ModelConfig c = shape_config(Arch::LLaDA, "test");
  c.tied_output = true;
  const std::string gguf = write_model(dir, "tied.gguf", c);
  auto model = Model::load(gguf);
  EXPECT_TRUE(model->config().tied_output);
  EXPECT_EQ(model->weights().output.data, model->weights().token_embd.data);
  HfExport hf(gguf, c);
  hf.tied = true;
  hf.write(dir.path());
  EXPECT_LE(max_diff(logits_of(dir.path(), kTokens), logits_of(gguf, kTokens)), 1e-4);
}

TEST(Loader, TokenizerJsonFillsVocabInfo) {
  testing::TempDir dir;
  const ModelConfig c = shape_config(Arch::LLaDA, "test");
  const std::string gguf = write_model(dir, "m.gguf", c);
  HfExport(gguf, c).write(dir.path());
  auto hf = Model::load(dir.path());
  auto gg = Model::load(gguf);
  EXPECT_EQ(hf->vocab().model, "hf");
  EXPECT_EQ(hf->vocab().tokens, gg->vocab().tokens);
  EXPECT_EQ(hf->vocab().n_merges, 2u);
  EXPECT_EQ(hf->vocab().chat_template, "{{ messages }}");
  EXPECT_EQ(hf->config().mask_token_id, 299);  // from <|mdm_mask|>: the LLaDA config gave none
  EXPECT_EQ(gg->vocab().model, "gpt2");
  EXPECT_EQ(gg->vocab().tokens.size(), 300u);
  EXPECT_EQ(gg->vocab().tokens[65], "A");
}

// Copies a GGUF file, letting `edit` drop (return false) or change tensors and metadata.
void copy_gguf(const std::string& src, const std::string& dst, const std::function<bool(TensorView&)>& edit_tensor,
               const std::function<void(std::string&, GgufValue&)>& edit_key = nullptr) {
  const GgufFile f = GgufFile::open(src);
  GgufWriter w;
  for (auto [key, value] : f.metadata()) {
    if (edit_key) edit_key(key, value);
    if (!key.empty()) w.set(key, value);
  }
  for (TensorView t : f.tensors()) {
    if (edit_tensor(t)) w.add_tensor(t);
  }
  w.write(dst);
}

void expect_error(const std::string& path, const std::vector<std::string>& needles) {
  try {
    Model::load(path);
    ADD_FAILURE() << "loading " << path << " did not fail";
  } catch (const Error& e) {
    for (const std::string& needle : needles) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "'" << e.what() << "' lacks '" << needle << "'";
    }
  }
}

TEST(Loader, BrokenGgufFilesNameTheFileAndTheProblem) {
  testing::TempDir dir;
  const ModelConfig c = shape_config(Arch::Dream, "test");
  const std::string good = write_model(dir, "good.gguf", c);

  const std::string missing = dir.file("missing.gguf");
  copy_gguf(good, missing, [](TensorView& t) { return t.name != "blk.1.ffn_up.weight"; });
  expect_error(missing, {missing, "blk.1.ffn_up.weight"});

  const std::string no_bias = dir.file("no-bias.gguf");
  copy_gguf(good, no_bias, [](TensorView& t) { return t.name != "blk.0.attn_k.bias"; });
  expect_error(no_bias, {no_bias, "blk.0.attn_k.bias"});

  // attn_q's bytes under attn_k's shape: a tensor whose shape does not match the config.
  const GgufFile g = GgufFile::open(good);
  const TensorView q = *g.find_tensor("blk.0.attn_q.weight");
  const std::string shape = dir.file("shape.gguf");
  copy_gguf(good, shape, [&](TensorView& t) {
    if (t.name == "blk.0.attn_k.weight") {
      t.shape = q.shape;
      t.data = q.data;
      t.nbytes = q.nbytes;
    }
    return true;
  });
  expect_error(shape, {shape, "blk.0.attn_k.weight", "shape"});

  const std::string arch = dir.file("arch.gguf");
  copy_gguf(good, arch, [](TensorView&) { return true; }, [](std::string& key, GgufValue& value) {
    if (key == "general.architecture") value = GgufValue::string("gpt-j");
  });
  expect_error(arch, {arch, "gpt-j"});

  const std::string key = dir.file("key.gguf");
  copy_gguf(good, key, [](TensorView&) { return true; }, [](std::string& k, GgufValue&) {
    if (k == "dream.block_count") k.clear();
  });
  expect_error(key, {key, "dream.block_count"});

  const std::string garbage = dir.file("garbage.gguf");
  write_text(garbage, "this is not a model file at all");
  expect_error(garbage, {garbage});
  expect_error(dir.file("absent.gguf"), {"absent.gguf"});
}

TEST(Loader, BrokenHuggingFaceCheckpointsNameTheFileAndTheProblem) {
  testing::TempDir dir;
  const ModelConfig c = shape_config(Arch::LLaDAMoE, "test");
  const std::string gguf = write_model(dir, "m.gguf", c);

  const std::string missing = dir.file("missing");
  std::filesystem::create_directory(missing);
  HfExport drop(gguf, c);
  drop.skip = "model.layers.1.mlp.experts.3.up_proj.weight";
  drop.write(missing);
  expect_error(missing, {missing, "model.layers.1.mlp.experts.3.up_proj.weight"});

  const std::string shape = dir.file("shape");
  std::filesystem::create_directory(shape);
  HfExport swap(gguf, c);
  swap.rename = {{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"},
                 {"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.weight"}};
  swap.write(shape);
  expect_error(shape, {shape, "model.layers.0.self_attn.q_proj.weight", "shape"});

  const std::string arch = dir.file("arch");
  std::filesystem::create_directory(arch);
  HfExport(gguf, c).write(arch);
  write_text(arch + "/config.json", json{{"architectures", {"MambaForCausalLM"}}, {"model_type", "mamba"}}.dump());
  expect_error(arch, {"config.json", "MambaForCausalLM"});

  const std::string no_config = dir.file("no-config");
  std::filesystem::create_directory(no_config);
  HfExport(gguf, c).write(no_config);
  std::filesystem::remove(no_config + "/config.json");
  expect_error(no_config, {no_config, "config.json"});

  const std::string bad_json = dir.file("bad-json");
  std::filesystem::create_directory(bad_json);
  HfExport(gguf, c).write(bad_json);
  write_text(bad_json + "/config.json", "{\"hidden_size\": 64,");
  expect_error(bad_json, {"config.json"});
}

TEST(Loader, OutOfRangeTokenNamesTheModelFile) {
  testing::TempDir dir;
  const std::string path = write_model(dir, "m.gguf", shape_config(Arch::LLaDA, "test"));
  auto model = Model::load(path);
  ThreadPool pool(1);
  std::vector<float> logits(2 * 300);
  const std::vector<int32_t> tokens = {1, 300};
  try {
    model->forward(tokens, ForwardOptions{}, logits.data(), pool);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("300"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ruvdllm
