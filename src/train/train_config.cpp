#include "ruvdllm/train/train_config.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "ruvdllm/core/error.h"
#include "ruvdllm/model/init.h"

namespace ruvdllm::train {
namespace {

// One TOML table being read: remembers which keys were read, so that whatever is left over
// (a typo, a key from another tool) is reported instead of silently ignored.
class Section {
 public:
  Section(const toml::table* table, std::string prefix, const std::string& source)
      : table_(table), prefix_(std::move(prefix)), source_(source) {}

  bool has(const std::string& key) const { return table_ && table_->contains(key); }

  int64_t integer(const std::string& key, int64_t fallback) {
    const toml::node* node = find(key);
    if (!node) return fallback;
    if (const auto* v = node->as_integer()) return v->get();
    // 1e3 reads naturally as a count; accept a float only when it is a whole number.
    if (const auto* v = node->as_floating_point()) {
      const double d = v->get();
      if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    fail("{}: {} must be an integer", source_, name(key));
  }
  int64_t positive(const std::string& key, int64_t fallback) {
    const int64_t v = integer(key, fallback);
    if (v <= 0) fail("{}: {} must be positive (is {})", source_, name(key), v);
    return v;
  }
  int64_t non_negative(const std::string& key, int64_t fallback) {
    const int64_t v = integer(key, fallback);
    if (v < 0) fail("{}: {} must not be negative (is {})", source_, name(key), v);
    return v;
  }
  double number(const std::string& key, double fallback) {
    const toml::node* node = find(key);
    if (!node) return fallback;
    if (const auto* v = node->as_floating_point()) return v->get();
    if (const auto* v = node->as_integer()) return static_cast<double>(v->get());
    fail("{}: {} must be a number", source_, name(key));
  }
  // A number in [lo, hi] (or (lo, hi] with open_lo).
  double number_in(const std::string& key, double fallback, double lo, double hi, bool open_lo = false) {
    const double v = number(key, fallback);
    if (!(open_lo ? v > lo : v >= lo) || !(v <= hi)) {
      fail("{}: {} = {} is outside {}{}, {}]", source_, name(key), v, open_lo ? "(" : "[", lo, hi);
    }
    return v;
  }
  std::string string(const std::string& key, const std::string& fallback) {
    const toml::node* node = find(key);
    if (!node) return fallback;
    if (const auto* v = node->as_string()) return v->get();
    fail("{}: {} must be a string", source_, name(key));
  }
  bool boolean(const std::string& key, bool fallback) {
    const toml::node* node = find(key);
    if (!node) return fallback;
    if (const auto* v = node->as_boolean()) return v->get();
    fail("{}: {} must be true or false", source_, name(key));
  }
  const toml::array* array(const std::string& key) {
    const toml::node* node = find(key);
    if (!node) return nullptr;
    if (const auto* v = node->as_array()) return v;
    fail("{}: {} must be an array", source_, name(key));
  }
  const toml::table* table(const std::string& key) {
    const toml::node* node = find(key);
    if (!node) return nullptr;
    if (const auto* v = node->as_table()) return v;
    fail("{}: [{}] must be a table", source_, name(key));
  }
  // Errors on the first key never read.
  void finish() const {
    if (!table_) return;
    for (const auto& [key, node] : *table_) {
      if (!read_.contains(std::string(key.str()))) {
        fail("{}: unknown key '{}'", source_, name(std::string(key.str())));
      }
    }
  }
  std::string name(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

 private:
  const toml::node* find(const std::string& key) {
    read_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }
  const toml::table* table_;
  std::string prefix_;
  const std::string& source_;
  std::set<std::string> read_;
};

void check_device_list(const std::vector<int>& devices) {
  if (devices.empty()) fail("the device list is empty; name at least one CUDA device index");
  std::set<int> seen;
  for (int d : devices) {
    if (!seen.insert(d).second) fail("CUDA device {} is listed twice", d);
  }
}

void read_model(Section& s, TrainConfig& c, const std::string& source) {
  ModelSpec& m = c.model;
  m.init_from = s.string("init_from", "");
  m.tokenizer = s.string("tokenizer", "");
  static const char* kShapeKeys[] = {"arch", "vocab_size", "n_embd", "n_layer", "n_head", "n_head_kv",
                                     "n_ff", "context_length", "rope_base", "rms_eps", "tied_output",
                                     "mask_token_id", "bos_token_id", "eos_token_id", "init_std"};
  if (!m.init_from.empty()) {
    for (const char* key : kShapeKeys) {
      if (s.has(key)) fail("{}: {} conflicts with model.init_from (the shape comes from that model)", source, s.name(key));
    }
    return;
  }
  const std::string arch_text = s.string("arch", "llada");
  Arch arch = Arch::LLaDA;
  try {
    arch = arch_from_name(arch_text);
  } catch (const Error& e) {
    fail("{}: model.arch: {}", source, e.what());
  }
  if (arch == Arch::LLaDAMoE) fail("{}: model.arch '{}': mixture-of-experts models cannot be trained", source, arch_text);
  // The arch's flags (bias, logit shift, RoPE order, causal) as the runtime expects them.
  ModelConfig shape = shape_config(arch, "test");
  shape.n_embd = s.positive("n_embd", 384);
  shape.n_layer = s.positive("n_layer", 6);
  shape.n_head = s.positive("n_head", 6);
  shape.n_head_kv = s.positive("n_head_kv", shape.n_head);
  shape.n_ff = s.positive("n_ff", 1024);
  if (shape.n_embd % shape.n_head != 0) {
    fail("{}: model.n_embd {} is not a multiple of model.n_head {}", source, shape.n_embd, shape.n_head);
  }
  shape.head_dim = shape.n_embd / shape.n_head;
  if (shape.head_dim % 2 != 0) fail("{}: model.n_embd / model.n_head = {} must be even (RoPE)", source, shape.head_dim);
  if (shape.n_head % shape.n_head_kv != 0) {
    fail("{}: model.n_head {} is not a multiple of model.n_head_kv {}", source, shape.n_head, shape.n_head_kv);
  }
  shape.context_length = s.non_negative("context_length", 0);  // 0: data.seq_len
  shape.rope_base = static_cast<float>(s.number_in("rope_base", 10000.0, 0, 1e9, true));
  shape.rms_eps = static_cast<float>(s.number_in("rms_eps", 1e-5, 0, 1, true));
  shape.tied_output = s.boolean("tied_output", false);
  // 0 / -1: from the tokenizer.
  shape.vocab_size = s.non_negative("vocab_size", 0);
  shape.mask_token_id = s.integer("mask_token_id", -1);
  shape.bos_token_id = s.integer("bos_token_id", -1);
  shape.eos_token_id = s.integer("eos_token_id", -1);
  m.init_std = static_cast<float>(s.number_in("init_std", 0.02, 0, 10, true));
  if (m.tokenizer.empty()) {
    if (shape.vocab_size == 0) fail("{}: model.vocab_size is required without model.tokenizer", source);
    if (shape.mask_token_id < 0) fail("{}: model.mask_token_id is required without model.tokenizer", source);
  }
  for (const char* key : {"mask_token_id", "bos_token_id", "eos_token_id"}) {
    const int64_t id = key[0] == 'm' ? shape.mask_token_id : key[0] == 'b' ? shape.bos_token_id : shape.eos_token_id;
    if (id < -1 || (shape.vocab_size > 0 && id >= shape.vocab_size)) {
      fail("{}: model.{} {} is outside the vocabulary of {}", source, key, id, shape.vocab_size);
    }
  }
  m.shape = shape;
}

std::vector<DataSpec> read_data_list(Section& s, const std::string& key, bool weighted,
                                     const std::string& source) {
  std::vector<DataSpec> out;
  const toml::array* list = s.array(key);
  if (!list) return out;
  std::set<std::string> names;
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string prefix = fmt::format("{}[{}]", s.name(key), i);
    const toml::table* entry = list->get(i)->as_table();
    if (!entry) fail("{}: {} must be a table {{ name = ..., path = ... }}", source, prefix);
    Section e(entry, prefix, source);
    DataSpec d;
    d.path = e.string("path", "");
    if (d.path.empty()) fail("{}: {}.path is required", source, prefix);
    d.name = e.string("name", "");
    if (d.name.empty()) fail("{}: {}.name is required", source, prefix);
    if (!names.insert(d.name).second) fail("{}: {}: domain '{}' appears twice", source, prefix, d.name);
    if (weighted) d.weight = e.number_in("weight", 1.0, 0, 1e9);
    e.finish();
    out.push_back(d);
  }
  return out;
}

}  // namespace

TrainConfig parse_train_config(std::string_view toml_text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    fail("{}:{}: {}", source, e.source().begin.line, e.description());
  }
  TrainConfig c;
  c.source = source;
  c.text = std::string(toml_text);
  Section top(&root, "", source);

  Section model(top.table("model"), "model", source);
  read_model(model, c, source);
  model.finish();

  Section data(top.table("data"), "data", source);
  c.seq_len = data.positive("seq_len", c.seq_len);
  const std::string format = data.string("format", "pretrain");
  if (format != "pretrain" && format != "sft") fail("{}: data.format '{}' must be pretrain or sft", source, format);
  c.sft = format == "sft";
  c.train_data = read_data_list(data, "train", true, source);
  c.heldout_data = read_data_list(data, "heldout", false, source);
  if (c.train_data.empty()) fail("{}: data.train must list at least one domain", source);
  data.finish();
  if (c.model.init_from.empty()) {
    if (c.model.shape.context_length == 0) c.model.shape.context_length = c.seq_len;
    if (c.model.shape.context_length < c.seq_len) {
      fail("{}: data.seq_len {} exceeds model.context_length {}", source, c.seq_len, c.model.shape.context_length);
    }
  }

  Section train(top.table("train"), "train", source);
  c.steps = train.positive("steps", c.steps);
  c.batch_size = train.positive("batch_size", c.batch_size);
  c.grad_accum = train.positive("grad_accum", c.grad_accum);
  c.lr = train.number_in("lr", c.lr, 0, 10, true);
  c.min_lr = train.number_in("min_lr", c.min_lr, 0, c.lr);
  c.warmup_steps = train.non_negative("warmup_steps", c.warmup_steps);
  c.adamw.weight_decay = train.number_in("weight_decay", c.adamw.weight_decay, 0, 10);
  c.adamw.beta1 = train.number_in("beta1", c.adamw.beta1, 0, 0.999999);
  c.adamw.beta2 = train.number_in("beta2", c.adamw.beta2, 0, 0.999999);
  c.adamw.eps = train.number_in("adam_eps", c.adamw.eps, 0, 1, true);
  c.grad_clip = train.number_in("grad_clip", c.grad_clip, 0, 1e9);
  c.seed = static_cast<uint64_t>(train.non_negative("seed", static_cast<int64_t>(c.seed)));
  c.threads = static_cast<int>(train.non_negative("threads", c.threads));
  if (c.threads > 1024) fail("{}: train.threads {} is more than 1024", source, c.threads);
  const bool device_given = train.has("device");
  c.device = train.string("device", c.device);
  if (const toml::array* devices = train.array("devices")) {
    for (size_t i = 0; i < devices->size(); ++i) {
      const auto* index = devices->get(i)->as_integer();
      if (!index || index->get() < 0 || index->get() > 1 << 20) {
        fail("{}: train.devices[{}] must be a CUDA device index (0, 1, ...)", source, i);
      }
      c.devices.push_back(static_cast<int>(index->get()));
    }
    try {
      check_device_list(c.devices);
    } catch (const Error& e) {
      fail("{}: train.devices: {}", source, e.what());
    }
    if (device_given) {
      fail("{}: train.device = \"{}\" conflicts with train.devices (CUDA device indices); keep one "
           "of them",
           source, c.device);
    }
    c.device = fmt::format("cuda:{}", c.devices[0]);
  }
  c.precision = train.string("precision", c.precision);
  if (!c.precision.empty() && c.precision != "bf16" && c.precision != "tf32" &&
      c.precision != "f32") {
    fail("{}: train.precision '{}' must be bf16, tf32 or f32", source, c.precision);
  }
  train.finish();

  Section objective(top.table("objective"), "objective", source);
  const std::string schedule = objective.string("schedule", "linear");
  const std::string t_sampling = objective.string("t_sampling", "stratified");
  try {
    c.schedule = parse_schedule(schedule);
  } catch (const Error& e) {
    fail("{}: objective.schedule: {}", source, e.what());
  }
  try {
    c.t_sampling = parse_time_sampling(t_sampling);
  } catch (const Error& e) {
    fail("{}: objective.t_sampling: {}", source, e.what());
  }
  c.t_eps = objective.number_in("t_eps", c.t_eps, 0, 0.5, true);
  objective.finish();

  Section eval(top.table("eval"), "eval", source);
  c.eval_interval = eval.non_negative("interval", c.eval_interval);
  c.eval_samples = eval.positive("samples", c.eval_samples);
  c.eval_windows = eval.positive("windows", c.eval_windows);
  eval.finish();

  Section checkpoint(top.table("checkpoint"), "checkpoint", source);
  c.checkpoint_interval = checkpoint.non_negative("interval", c.checkpoint_interval);
  checkpoint.finish();

  Section output(top.table("output"), "output", source);
  c.out_dir = output.string("dir", c.out_dir);
  if (c.out_dir.empty()) fail("{}: output.dir must not be empty", source);
  const std::string type = output.string("type", "f16");
  const auto export_type = type_from_name(type);
  if (!export_type || (*export_type != TensorType::F16 && *export_type != TensorType::Q8_0 &&
                       *export_type != TensorType::F32 && *export_type != TensorType::BF16)) {
    fail("{}: output.type '{}' must be f16, q8_0, bf16 or f32", source, type);
  }
  c.export_type = *export_type;
  c.merge_lora = output.boolean("merge_lora", false);
  output.finish();

  if (const toml::table* lora_table = top.table("lora")) {
    Section lora(lora_table, "lora", source);
    LoraOptions o;
    o.rank = lora.positive("rank", o.rank);
    o.alpha = lora.number("alpha", o.alpha);
    o.seed = c.seed;
    if (const toml::array* targets = lora.array("targets")) {
      o.targets.clear();
      for (size_t i = 0; i < targets->size(); ++i) {
        const auto* name = targets->get(i)->as_string();
        if (!name) fail("{}: lora.targets[{}] must be a string", source, i);
        try {
          o.targets.push_back(parse_lora_target(name->get()));
        } catch (const Error& e) {
          fail("{}: lora.targets: {}", source, e.what());
        }
      }
    }
    const double dropout = lora.number("dropout", 0.0);
    if (dropout != 0.0) fail("{}: lora.dropout = {}: only 0 is supported", source, dropout);
    lora.finish();
    try {
      o.validate();
    } catch (const Error& e) {
      fail("{}: [lora]: {}", source, e.what());
    }
    if (c.model.init_from.empty()) fail("{}: [lora] needs model.init_from (the base model the adapters train on)", source);
    if (c.devices.size() > 1) {
      fail("{}: train.devices: the CUDA engine does not support LoRA, on one GPU or several; LoRA "
           "trains on the CPU",
           source);
    }
    if (c.device != "cpu") {
      fail("{}: train.device = \"{}\": the CUDA engine does not support LoRA; LoRA trains on the CPU", source,
           c.device);
    }
    c.lora = o;
  }
  if (c.merge_lora && !c.lora) fail("{}: output.merge_lora needs a [lora] section", source);

  top.finish();
  return c;
}

std::vector<int> parse_device_list(std::string_view text) {
  std::vector<int> out;
  size_t at = 0;
  while (!text.empty() && at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string_view item = text.substr(at, comma - at);
    int index = -1;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), index);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || index < 0) {
      fail("--devices '{}': '{}' is not a CUDA device index (expected a list such as 0,1)", text,
           item);
    }
    out.push_back(index);
    at = comma + 1;
  }
  try {
    check_device_list(out);
  } catch (const Error& e) {
    fail("--devices '{}': {}", text, e.what());
  }
  return out;
}

void apply_device_options(TrainConfig& config, const std::string& device,
                          const std::optional<std::string>& devices) {
  if (!device.empty() && devices) {
    if (device == "cpu") {
      fail("--device cpu conflicts with --devices {}: --devices trains on CUDA GPUs; drop one of "
           "them",
           *devices);
    }
    fail("--device {} conflicts with --devices {}; give one of them", device, *devices);
  }
  if (!device.empty()) {
    config.device = device;
    config.devices.clear();
  }
  if (devices) {
    config.devices = parse_device_list(*devices);
    config.device = fmt::format("cuda:{}", config.devices[0]);
  }
  if (config.lora && !config.devices.empty()) {
    fail("{}: --devices {}: the CUDA engine does not support LoRA; LoRA trains on the CPU",
         config.source, devices.value_or(""));
  }
}

TrainConfig load_train_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the training config", path);
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("{}: cannot read the training config", path);
  return parse_train_config(text.str(), path);
}

}  // namespace ruvdllm::train
