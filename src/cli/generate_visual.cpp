#include "cli/generate_visual.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <span>

namespace ruvdllm::cli {
namespace {

constexpr const char* kMaskGlyph = "\xE2\x96\x91";     // ░
constexpr const char* kNewlineGlyph = "\xE2\x86\xB5";  // ↵
constexpr const char* kInvalidGlyph = "\xEF\xBF\xBD";  // U+FFFD
constexpr const char* kControlGlyph = "\xC2\xB7";      // ·
constexpr const char* kReverse = "\x1b[7m";
constexpr const char* kReset = "\x1b[0m";

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one.
size_t utf8_length(const std::string& s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  size_t n = 0;
  uint32_t min = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) n = 2, min = 0x80;
  else if ((c & 0xF0) == 0xE0) n = 3, min = 0x800;
  else if ((c & 0xF8) == 0xF0) n = 4, min = 0x10000;
  else return 0;
  if (i + n > s.size()) return 0;
  uint32_t code = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

void append_cells(const std::string& text, bool fresh, std::vector<CanvasView::Cell>* out) {
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t n = utf8_length(text, i);
    if (n == 0) {
      out->push_back({kInvalidGlyph, fresh});
      ++i;
      continue;
    }
    if (c == '\n') {
      out->push_back({kNewlineGlyph, fresh});
    } else if (c == '\t') {
      out->push_back({" ", fresh});
    } else if (c < 0x20 || c == 0x7F) {
      out->push_back({kControlGlyph, fresh});
    } else {
      out->push_back({text.substr(i, n), fresh});
    }
    i += n;
  }
}

struct TerminalSize {
  int columns = 80;
  int rows = 24;
};

TerminalSize terminal_size(std::FILE* out) {
  TerminalSize size;
  winsize ws{};
  if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_col > 0) size.columns = ws.ws_col;
    if (ws.ws_row > 0) size.rows = ws.ws_row;
  }
  return size;
}

}  // namespace

CanvasView::CanvasView(const Tokenizer& tokenizer, int32_t mask_id, int64_t region_begin, bool live,
                       std::FILE* out)
    : tokenizer_(tokenizer), mask_id_(mask_id), region_begin_(region_begin), live_(live), out_(out) {}

std::vector<CanvasView::Cell> CanvasView::cells(const StepInfo& step) const {
  std::vector<Cell> out;
  auto is_fresh = [&](int64_t p) { return std::binary_search(step.positions.begin(), step.positions.end(), p); };
  // Runs of committed tokens are decoded together, so multi-byte characters split across
  // tokens come out whole.
  std::vector<int32_t> run;
  bool run_fresh = false;
  auto flush = [&] {
    if (!run.empty()) append_cells(tokenizer_.decode(run), run_fresh, &out);
    run.clear();
  };
  const auto length = static_cast<int64_t>(step.canvas.size());
  for (int64_t p = std::max<int64_t>(0, region_begin_); p < length; ++p) {
    const int32_t token = step.canvas[static_cast<size_t>(p)];
    if (token == mask_id_) {
      flush();
      out.push_back({kMaskGlyph, false});
      continue;
    }
    const bool fresh = is_fresh(p);
    if (fresh != run_fresh) flush();
    run_fresh = fresh;
    run.push_back(token);
  }
  flush();
  return out;
}

bool CanvasView::on_step(const StepInfo& step) {
  if (live_) {
    draw_live(step);
    return true;
  }
  std::string line;
  for (const Cell& cell : cells(step)) line += cell.glyph;
  std::fprintf(out_, "step %ld/%ld: %s\n", static_cast<long>(step.step + 1), static_cast<long>(step.total_steps),
               line.c_str());
  std::fflush(out_);
  return true;
}

void CanvasView::draw_live(const StepInfo& step) {
  const TerminalSize size = terminal_size(out_);
  // One column short of the edge, so a full line never triggers the terminal's own wrap.
  const size_t width = static_cast<size_t>(std::max(10, size.columns - 1));
  const std::vector<Cell> all = cells(step);
  std::vector<std::span<const Cell>> lines;
  for (size_t i = 0; i < all.size(); i += width) {
    lines.push_back(std::span<const Cell>(all).subspan(i, std::min(width, all.size() - i)));
  }
  // Taller than the screen: keep the end, where the answer grows.
  const size_t max_lines = static_cast<size_t>(std::max(1, size.rows - 2));
  if (lines.size() > max_lines) lines.erase(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(max_lines));
  const auto masked = std::count(step.canvas.begin(), step.canvas.end(), mask_id_);

  std::string frame;
  if (lines_drawn_ > 0) frame += "\r\x1b[" + std::to_string(lines_drawn_) + "A\x1b[J";
  frame += "\x1b[1mstep " + std::to_string(step.step + 1) + "/" + std::to_string(step.total_steps) + "  block " +
           std::to_string(step.block + 1) + "  " + std::to_string(masked) + " masked" + kReset + "\n";
  for (const auto& line : lines) {
    bool reversed = false;
    for (const Cell& cell : line) {
      if (cell.fresh != reversed) {
        frame += cell.fresh ? kReverse : kReset;
        reversed = cell.fresh;
      }
      frame += cell.glyph;
    }
    if (reversed) frame += kReset;
    frame += "\n";
  }
  std::fputs(frame.c_str(), out_);
  std::fflush(out_);
  lines_drawn_ = static_cast<int>(lines.size()) + 1;
}

void CanvasView::erase_live() {
  if (lines_drawn_ == 0) return;
  std::fprintf(out_, "\r\x1b[%dA\x1b[J", lines_drawn_);
  std::fflush(out_);
  lines_drawn_ = 0;
}

void CanvasView::finish() {
  if (live_) erase_live();
}

}  // namespace ruvdllm::cli
