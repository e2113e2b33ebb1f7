#pragma once
// Writing vocabularies out: into a GGUF model's tokenizer.ggml.* keys (as llama.cpp's converter
// writes them, so other GGUF tools read the model), and as a Hugging Face tokenizer.json.
#include <string>

namespace ruvdllm {

class GgufWriter;
class Tokenizer;

// Sets tokenizer.ggml.model/pre/tokens/token_type/merges (and scores for SentencePiece), the
// bos/eos/mask/pad ids and add_bos/add_eos flags on the writer.
void write_tokenizer_metadata(const Tokenizer& tokenizer, GgufWriter& writer);
// A tokenizer.json that Tokenizer::from_tokenizer_json reads back into the same tokenizer.
std::string tokenizer_to_json(const Tokenizer& tokenizer);

}  // namespace ruvdllm
