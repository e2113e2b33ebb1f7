// libFuzzer target for the single-file safetensors parser: any input must either parse into
// tensors that lie inside the input, or throw ruvdllm::Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../src/io/safetensors_parse.h"
#include "ruvdllm/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ruvdllm::io::SafetensorsContents parsed = ruvdllm::io::parse_safetensors(data, size, "fuzz.safetensors");
    for (const auto& t : parsed.tensors) {
      const auto* begin = static_cast<const uint8_t*>(t.data);
      if (begin < data + 8 || t.nbytes > size || begin + t.nbytes > data + size) std::abort();
      // elements() multiplies signed dims: the sanitizer flags any overflow the parser let through.
      const size_t expected = static_cast<size_t>(t.elements()) * ruvdllm::type_traits(t.type).block_bytes;
      if (t.shape.empty() || t.nbytes != expected || t.rows() < 0) std::abort();
    }
  } catch (const ruvdllm::Error&) {
  }
  return 0;
}
