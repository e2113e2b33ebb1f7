// The BPE merge loop shared by both vocabulary families: symbols in a linked list, candidate
// pairs in a priority queue, stale candidates skipped when popped. Rank-merged vocabularies
// look pairs up by token ids; score-merged (SentencePiece) ones by the joined text.
#include <queue>
#include <vector>

#include "ruvdllm/core/error.h"
#include "text/tokenizer_model.h"

namespace ruvdllm::text_detail {
namespace {

struct Symbol {
  uint32_t begin;
  uint32_t length;  // 0 once merged into its left neighbour
  int32_t id;       // -1: no token spells it (yet)
  int32_t prev;
  int32_t next;
};

struct Candidate {
  double priority;  // lower merges first: the merge rank, or minus the merged token's score
  uint32_t begin;   // ties go to the leftmost pair
  int32_t left;
  int32_t right;
  uint32_t length;  // both symbols' lengths when queued; a mismatch later means stale
  int32_t result;
};

struct LaterFirst {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.priority > b.priority || (a.priority == b.priority && a.begin > b.begin);
  }
};

class Merger {
 public:
  Merger(const TokenizerModel& model, std::string_view piece) : model_(model), piece_(piece) {}

  void run(std::vector<int32_t>& out) {
    split_into_symbols();
    for (size_t i = 0; i + 1 < symbols_.size(); ++i) consider(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
    while (!queue_.empty()) {
      const Candidate c = queue_.top();
      queue_.pop();
      Symbol& left = symbols_[static_cast<size_t>(c.left)];
      Symbol& right = symbols_[static_cast<size_t>(c.right)];
      if (left.length == 0 || right.length == 0 || left.next != c.right || left.length + right.length != c.length) {
        continue;
      }
      left.length += right.length;
      left.id = c.result;
      left.next = right.next;
      right.length = 0;
      if (right.next >= 0) symbols_[static_cast<size_t>(right.next)].prev = c.left;
      if (left.prev >= 0) consider(left.prev, c.left);
      if (left.next >= 0) consider(c.left, left.next);
    }
    emit(out);
  }

 private:
  void split_into_symbols() {
    symbols_.reserve(piece_.size());
    const bool bytes = model_.kind == TokenizerKind::ByteLevelBpe;
    size_t i = 0;
    while (i < piece_.size()) {
      size_t len = 1;
      int32_t id;
      if (bytes) {
        id = model_.byte_ids[static_cast<unsigned char>(piece_[i])];
      } else {
        // One symbol per character; a byte that starts no valid character stands alone and
        // later falls back to its <0xNN> token.
        len = std::max<size_t>(1, utf8_sequence_length(piece_.substr(i)));
        auto it = model_.ids_by_piece.find(piece_.substr(i, len));
        id = it == model_.ids_by_piece.end() ? -1 : it->second;
      }
      const auto index = static_cast<int32_t>(symbols_.size());
      symbols_.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len), id, index - 1,
                          i + len < piece_.size() ? index + 1 : -1});
      i += len;
    }
  }

  void consider(int32_t left_index, int32_t right_index) {
    const Symbol& left = symbols_[static_cast<size_t>(left_index)];
    const Symbol& right = symbols_[static_cast<size_t>(right_index)];
    Candidate c{0.0, left.begin, left_index, right_index, left.length + right.length, -1};
    if (model_.merge_by_score) {
      auto it = model_.ids_by_piece.find(piece_.substr(left.begin, c.length));
      if (it == model_.ids_by_piece.end()) return;
      c.result = it->second;
      c.priority = -static_cast<double>(model_.tokens[static_cast<size_t>(it->second)].score);
    } else {
      if (left.id < 0 || right.id < 0) return;
      const uint64_t key = static_cast<uint64_t>(left.id) << 32 | static_cast<uint32_t>(right.id);
      auto it = model_.merges.find(key);
      if (it == model_.merges.end()) return;
      c.result = it->second.result;
      c.priority = it->second.rank;
    }
    queue_.push(c);
  }

  void emit(std::vector<int32_t>& out) const {
    for (int32_t i = symbols_.empty() ? -1 : 0; i >= 0; i = symbols_[static_cast<size_t>(i)].next) {
      const Symbol& s = symbols_[static_cast<size_t>(i)];
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      for (uint32_t b = s.begin; b < s.begin + s.length; ++b) {
        const int32_t byte_id = model_.byte_ids[static_cast<unsigned char>(piece_[b])];
        if (byte_id >= 0) {
          out.push_back(byte_id);
        } else if (model_.unk) {
          // Without a byte token the character is lost: one <unk> stands for all of it.
          out.push_back(*model_.unk);
          break;
        } else {
          fail("{}: no token for byte 0x{:02X} and no unknown token to stand in for it", model_.source,
               static_cast<unsigned char>(piece_[b]));
        }
      }
    }
  }

  const TokenizerModel& model_;
  std::string_view piece_;
  std::vector<Symbol> symbols_;
  std::priority_queue<Candidate, std::vector<Candidate>, LaterFirst> queue_;
};

}  // namespace

void encode_piece(const TokenizerModel& model, std::string_view piece, std::vector<int32_t>& out) {
  if (piece.empty()) return;
  if (model.ignore_merges) {
    auto it = model.ids_by_piece.find(piece);
    if (it != model.ids_by_piece.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (model.cache.find(piece, out)) return;
  const size_t start = out.size();
  Merger(model, piece).run(out);
  model.cache.insert(piece, out.data() + start, out.size() - start);
}

}  // namespace ruvdllm::text_detail
