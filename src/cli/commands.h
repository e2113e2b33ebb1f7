#pragma once
// Each subcommand registers its options on the app and runs when selected.
#include <CLI/CLI.hpp>

namespace ruvdllm::cli {

void register_info(CLI::App& app);
void register_logits(CLI::App& app);
void register_init(CLI::App& app);
void register_quantize(CLI::App& app);
void register_bench(CLI::App& app);
void register_bench_gpu(CLI::App& bench);  // `bench gpu-step`, under `bench`
void register_tokenize(CLI::App& app);
void register_generate(CLI::App& app);
void register_tokenizer(CLI::App& app);  // `tokenizer train`
void register_pack(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);

}  // namespace ruvdllm::cli
