// ruvdllm: the command-line front end. A thin layer over libruvdllm: parse flags, call the
// library, print. Every failure ends in one line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>
#include <new>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/generate_env.h"
#include "ruvdllm/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"ruvdllm: an engine for diffusion language models (LLaDA, Dream)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ruvdllm 0.1.0");
  ruvdllm::cli::register_info(app);
  ruvdllm::cli::register_logits(app);
  ruvdllm::cli::register_init(app);
  ruvdllm::cli::register_quantize(app);
  ruvdllm::cli::register_bench(app);
  ruvdllm::cli::register_tokenize(app);
  ruvdllm::cli::register_generate(app);
  ruvdllm::cli::register_tokenizer(app);
  ruvdllm::cli::register_pack(app);
  ruvdllm::cli::register_train(app);
  ruvdllm::cli::register_eval(app);
  // CLI11 reports an unknown command as "a subcommand is required"; name it instead.
  auto is_command = [&](const char* name) {
    for (const CLI::App* sub : app.get_subcommands({})) {
      if (sub->get_name() == name) return true;
    }
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::fprintf(stderr, "ruvdllm: error: unknown command '%s' (see ruvdllm --help)\n", argv[1]);
    return 2;
  }
  try {
    // Every command honours RUVDLLM_TARGET, so any result can be reproduced on another machine.
    ruvdllm::cli::apply_simd_target_override();
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ruvdllm: error: %s (see ruvdllm --help)\n", e.what());
    return 2;
  } catch (const ruvdllm::Error& e) {
    std::fprintf(stderr, "ruvdllm: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ruvdllm: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ruvdllm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
