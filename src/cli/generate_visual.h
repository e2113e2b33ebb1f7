#pragma once
// `generate --visual`: the canvas as it fills in. On a terminal it is redrawn in place each
// step (masked positions as ░, tokens committed this step in reverse video) and erased at the
// end so the final text prints cleanly; when stderr is not a terminal, each step is one plain
// line instead.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "ruvdllm/diffusion/generate.h"
#include "ruvdllm/text/tokenizer.h"

namespace ruvdllm::cli {

class CanvasView {
 public:
  // Shows canvas positions from region_begin on. live: redraw with ANSI escapes.
  CanvasView(const Tokenizer& tokenizer, int32_t mask_id, int64_t region_begin, bool live,
             std::FILE* out = stderr);
  bool on_step(const StepInfo& step);  // always true: watching never stops generation
  void finish();

  struct Cell {
    std::string glyph;  // one printable character (UTF-8)
    bool fresh = false;  // committed this step
  };
  // The region as display cells: each token's text split into characters, with newlines,
  // control bytes and invalid UTF-8 made visible so one cell is one terminal column.
  std::vector<Cell> cells(const StepInfo& step) const;

 private:
  void draw_live(const StepInfo& step);
  void erase_live();

  const Tokenizer& tokenizer_;
  int32_t mask_id_;
  int64_t region_begin_;
  bool live_;
  std::FILE* out_;
  int lines_drawn_ = 0;
};

}  // namespace ruvdllm::cli
