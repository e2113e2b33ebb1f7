// libFuzzer target for the GGUF parser: any input must either parse into tensors that lie
// inside the input, or throw ruvdllm::Error. Anything else (a crash, a sanitizer report,
// another exception, an allocation beyond -rss_limit_mb) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../src/io/gguf_parse.h"
#include "ruvdllm/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ruvdllm::io::GgufContents parsed = ruvdllm::io::parse_gguf(data, size, "fuzz.gguf");
    size_t display_chars = 0;
    for (const auto& [key, value] : parsed.metadata) display_chars += value.to_display_string().size() + key.size();
    for (const auto& t : parsed.tensors) {
      const auto* begin = static_cast<const uint8_t*>(t.data);
      if (begin < data + parsed.data_offset || t.nbytes > size || begin + t.nbytes > data + size) std::abort();
      if (t.nbytes != ruvdllm::row_bytes(t.type, t.row_len()) * static_cast<size_t>(t.rows())) std::abort();
    }
    if (parsed.data_offset % parsed.alignment != 0 || display_chars == size_t(-1)) std::abort();
  } catch (const ruvdllm::Error&) {
  }
  return 0;
}
