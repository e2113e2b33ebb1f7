// Reference data for tests/text from two independent tokenizers:
//   gpt-3-encoder       GPT-2 byte-level BPE (ships encoder.json and vocab.bpe)
//   llama-tokenizer-js  LLaMA-1/2 SentencePiece BPE with byte fallback (vocabulary built in)
//
//   node generate.mjs vocab    exports both vocabularies as tokenizer.json files under vocab/
//                              (third-party data: not committed; scripts/setup.sh runs this)
//   node generate.mjs vectors  writes tests/text/data/{gpt2,llama}_vectors.json (committed)
//   node generate.mjs          both
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import llamaTokenizer from 'llama-tokenizer-js';

const require = createRequire(import.meta.url);
const gpt2 = require('gpt-3-encoder');

const here = path.dirname(fileURLToPath(import.meta.url));
const vocabDir = path.join(here, 'vocab');
const dataDir = path.join(here, '..', '..', 'tests', 'text', 'data');
const gpt2Package = path.dirname(require.resolve('gpt-3-encoder/package.json'));

// ---------------------------------------------------------------------------------------------
// Vocabulary export

function writeText(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

function writeJson(file, value) { writeText(file, JSON.stringify(value) + '\n'); }

// One case a line, so that a change to the vectors reads as a small diff.
function writeVectorFile(file, source, cases) {
  const lines = cases.map((c) => JSON.stringify(c));
  writeText(file, `{"source": ${JSON.stringify(source)},\n"cases": [\n${lines.join(',\n')}\n]}\n`);
}

function exportGpt2() {
  const vocab = JSON.parse(fs.readFileSync(path.join(gpt2Package, 'encoder.json'), 'utf8'));
  const lines = fs.readFileSync(path.join(gpt2Package, 'vocab.bpe'), 'utf8').split('\n');
  // Same reading as gpt-3-encoder: the first line is a version comment, the last is empty.
  const merges = lines.slice(1, lines.length - 1).map((line) => {
    const parts = line.split(/\s+/).filter((p) => p.length > 0);
    if (parts.length !== 2) throw new Error(`vocab.bpe: bad merge line '${line}'`);
    return `${parts[0]} ${parts[1]}`;
  });
  writeJson(path.join(vocabDir, 'gpt2-tokenizer.json'), {
    version: '1.0',
    added_tokens: [
      { id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
        normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    // Merges as "a b" strings, the older tokenizer.json form.
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
             end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  });
}

function exportLlama() {
  const tok = llamaTokenizer;
  const vocab = Object.create(null);  // pieces such as "toString" must not meet the prototype
  tok.vocabById.forEach((piece, id) => {
    if (Object.hasOwn(vocab, piece)) throw new Error(`llama vocabulary: duplicate piece '${piece}'`);
    vocab[piece] = id;
  });
  // llama-tokenizer-js keeps merges as "a b" keys with increasing priority values.
  const ranked = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]);
  const merges = ranked.map(([key]) => {
    const parts = key.split(' ');
    if (parts.length !== 2) throw new Error(`llama merges: ambiguous key '${key}'`);
    return parts;
  });
  const special = (id, content) => ({ id, content, single_word: false, lstrip: false,
                                      rstrip: false, normalized: false, special: true });
  writeJson(path.join(vocabDir, 'llama-tokenizer.json'), {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    // The LLaMA-2 ("legacy") layout: a normalizer, no pre-tokenizer.
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: '▁' },
      { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    ] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
             { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 },
    ] },
    // Merges as [a, b] pairs, the newer tokenizer.json form.
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  });
}

// ---------------------------------------------------------------------------------------------
// Test strings

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('the quick brown fox jumps over lazy dog Hello world tokenizer diffusion model ' +
  'language masked canvas transformer attention bidirectional unmask steps LLaDA Dream ' +
  'Internationalization supercalifragilisticexpialidocious antidisestablishmentarianism ' +
  'a I an of to in is it you that he was for on are as with his they at be this have from ' +
  'CamelCaseIdentifier snake_case_name SCREAMING_CASE x y z foo bar baz qux').split(' ');
const CONTRACTIONS = ["don't", "I'm", "they're", "we've", "she'll", "he'd", "it's", "IT'S",
  "Don'T", "you'RE", "WE'VE", "'s", "'t", "'re", "'ll", "'d", "'m", "rock'n'roll", "O'Neil"];
const SCRIPTS = [
  'Привет, мир! Как дела?', 'Съешь же ещё этих мягких французских булок',
  'Καλημέρα κόσμε', 'Ἀρχιμήδης', 'مرحبا بالعالم', 'السلام عليكم ورحمة الله',
  'שלום עולם', 'नमस्ते दुनिया', 'हिन्दी भाषा', 'สวัสดีชาวโลก', 'ภาษาไทย',
  '你好世界，今天天气很好。', '机器学习与自然语言处理', '龘靐齉爨', 'こんにちは世界', 'カタカナとひらがな',
  '日本語の文章です。', '안녕하세요 세계', '한국어 토크나이저', 'Tiếng Việt có dấu',
  'Grüße aus der Straße', 'Ça va? Élève à l’école', 'Zażółć gęślą jaźń', 'İstanbul ılık',
  'გამარჯობა', 'Բարեւ աշխարհ', 'ሰላም ለዓለም', 'வணக்கம் உலகம்', 'ಕನ್ನಡ', 'ᚠᛇᚻ᛫ᛒᛦᚦ',
  'Ελληνικά και English mixed', 'naïve café résumé coöperate', 'e\u0301 a\u0308 o\u0302',
  'ﬁ ﬂ Ⅻ ½ ² ³ ٣ ४ ௫', 'ℕ ℤ ℚ ℝ ∀x∈ℝ: x²≥0', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝', '𐍈𐌰𐌹𐍂', 'Ω≈ç√∫˜µ≤≥÷',
];
const EMOJI = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🇯🇵', '🇺🇸', '❤️', '🦙', '🤖', '✨', '🎉🎉🎉', '☕', '🧑🏿‍💻',
  '🏳️‍🌈', '1️⃣', '©', '™', '→', '★☆', '♠♥♦♣'];
const PUNCT = ['...', '!?', '—', '–', '“quoted”', '«guillemets»', '¿Qué?', '¡Hola!', '@#$%^&*()',
  '~`|\\', "''", "'''", "'", '::', '->', '=>', '!=', '<=>', '...!!!???', '"', '""', '()', '[]{}',
  '/* */', '--', '___', '***', '###', '…', '·', '、。', '，', '！', '？', '「」', '【】'];
const WHITESPACE = [' ', '  ', '   ', '    ', '        ', '\t', '\t\t', '\n', '\n\n', '\n\n\n',
  '\r\n', ' \n ', '\n    ', '\t \t', '\u00a0', '\u3000', '\u2003', ' \u00a0 ', '\r', '\f', '\v'];
const CODE = [
  'def f(x):\n    return x**2\n', 'for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}',
  '{"key": [1, 2, 3], "nested": {"a": null}}', '<div class="container">Hi</div>',
  'SELECT * FROM users WHERE id = 42;', 'std::vector<int32_t> ids{1, 2, 3};',
  'x += y >> 2; // shift', '#include <stdio.h>\nint main(void) { return 0; }',
  'fn main() { println!("hello {}", name); }', '$ ls -la | grep foo > out.txt',
  'if __name__ == "__main__":\n    main()', 'const re = /\\s+(?!\\S)/gu;',
  'https://example.com/path/to?q=1&r=two#frag', 'user.name+tag@example.org',
  'C:\\Users\\me\\file.txt', '0xDEADBEEF 0b1010 1e-9 3.14159 -273.15',
  'a=1,b=2;c=3', 'λx. x + 1', '    indented line\n        more indented', '\ttab\tseparated\tvalues',
];

function pick(rng, list) { return list[Math.floor(rng() * list.length)]; }

function randomNumber(rng) {
  const kind = Math.floor(rng() * 6);
  const digits = (n) => Array.from({ length: n }, () => Math.floor(rng() * 10)).join('');
  switch (kind) {
    case 0: return digits(1 + Math.floor(rng() * 20));
    case 1: return `${digits(1 + Math.floor(rng() * 4))}.${digits(1 + Math.floor(rng() * 6))}`;
    case 2: return `${digits(1)},${digits(3)},${digits(3)}`;
    case 3: return `20${digits(2)}-${digits(2)}-${digits(2)}`;
    case 4: return `+1 (${digits(3)}) ${digits(3)}-${digits(4)}`;
    default: return `${digits(2)}%`;
  }
}

// Code points from long-established blocks only, so that both regex engines' Unicode tables
// agree on \p{L} and \p{N}. U+0085, U+180E and U+FEFF are left out because JavaScript, PCRE2
// and Python's regex disagree on whether they are \s.
const CHAR_RANGES = [[0x20, 0x7e], [0xa1, 0x17f], [0x370, 0x3ff], [0x400, 0x4ff], [0x5d0, 0x5ea],
  [0x620, 0x64a], [0x900, 0x97f], [0xe01, 0xe5b], [0x3041, 0x3096], [0x30a1, 0x30fa],
  [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x2000, 0x206f], [0x2190, 0x21ff], [0x1f600, 0x1f64f],
  [0x1d400, 0x1d4ff], [0x10330, 0x1034a]];

function randomCharSoup(rng, length) {
  let out = '';
  for (let i = 0; i < length; ++i) {
    const [lo, hi] = pick(rng, CHAR_RANGES);
    const cp = lo + Math.floor(rng() * (hi - lo + 1));
    if (cp === 0x2028 || cp === 0x2029 || (cp >= 0x2060 && cp <= 0x206f)) continue;
    out += String.fromCodePoint(cp);
  }
  return out;
}

function randomFragment(rng) {
  switch (Math.floor(rng() * 9)) {
    case 0: return pick(rng, WORDS);
    case 1: return pick(rng, CONTRACTIONS);
    case 2: return pick(rng, SCRIPTS);
    case 3: return pick(rng, EMOJI);
    case 4: return pick(rng, PUNCT);
    case 5: return randomNumber(rng);
    case 6: return pick(rng, CODE);
    case 7: return pick(rng, WHITESPACE);
    default: return randomCharSoup(rng, 1 + Math.floor(rng() * 12));
  }
}

function randomSentence(rng) {
  const n = 3 + Math.floor(rng() * 12);
  const words = Array.from({ length: n }, () => pick(rng, WORDS));
  words[0] = words[0][0].toUpperCase() + words[0].slice(1);
  return words.join(' ') + pick(rng, ['.', '!', '?', ',', ':', ';', '']);
}

const HAND_PICKED = [
  '', ' ', '  ', '   ', '\n', '\n\n', '\t', 'a', 'A', 'Hello world', ' Hello world', 'Hello world ',
  'Hello  world', '   leading spaces', 'trailing spaces   ', 'I\'m here, aren\'t you?',
  "DON'T SHOUT", '12345678901234567890', '3.14', '1,234', "It's 5 o'clock", 'Hello\nworld',
  'Hello\r\nworld', 'line1\n\n\nline2', '  \n  \n', '<|endoftext|>', 'a<|endoftext|>b', '<s>',
  '</s>', '<unk>', '<0x41>', 'x<s>y</s>z', '😀', '👨‍👩‍👧‍👦 family', 'ß ẞ', 'İi ıI', 'ﬃ',
  '龘', '🦙🦙🦙', '\u00a0', 'a\u00a0b', 'tab\there', 'mixed 中文 and English', 'Ünïcödé',
  '...', "''''", '"""', '????', '!!!', '----', '====', '~~~~', 'aaaaaaaaaaaaaaaaaaaaaaaa',
  '                                ', '\t\t\t\t', '0', '00', '000', '0000', '1234', 'v1.2.3',
];

function buildStrings(count, seed) {
  const rng = mulberry32(seed);
  const out = [...HAND_PICKED];
  while (out.length < count) {
    const shape = rng();
    let s;
    if (shape < 0.15) {
      s = randomFragment(rng);
    } else if (shape < 0.65) {
      const n = 2 + Math.floor(rng() * 7);
      s = '';
      for (let i = 0; i < n; ++i) {
        s += randomFragment(rng);
        if (rng() < 0.6) s += rng() < 0.8 ? ' ' : pick(rng, WHITESPACE);
      }
    } else if (shape < 0.8) {
      s = randomCharSoup(rng, 1 + Math.floor(rng() * 40));
    } else if (shape < 0.97) {
      const n = 1 + Math.floor(rng() * 4);
      s = Array.from({ length: n }, () => randomSentence(rng)).join(pick(rng, [' ', '\n', '\n\n']));
    } else {
      // A few long texts (a paragraph or two) to exercise long pieces and runs.
      s = '';
      while (s.length < 600) s += randomSentence(rng) + ' ' + randomFragment(rng) + ' ';
    }
    out.push(s);
  }
  return out;
}

function writeVectors() {
  const strings = buildStrings(1200, 20240611);

  const gpt2Cases = strings.map((text) => {
    const ids = gpt2.encode(text);
    if (gpt2.decode(ids) !== text) throw new Error(`gpt-3-encoder does not round-trip ${JSON.stringify(text)}`);
    return { text, ids };
  });
  writeVectorFile(path.join(dataDir, 'gpt2_vectors.json'),
                  'gpt-3-encoder@1.1.4 encode(text); no special-token parsing, no BOS', gpt2Cases);

  // llama-tokenizer-js maps "▁" to a space when decoding (as SentencePiece does), and encodes
  // an empty string to [] where SentencePiece LLaMA gives [BOS]; such strings are left out.
  const llamaCases = [];
  for (const text of strings) {
    if (text.length === 0 || text.includes('▁')) continue;
    const ids = llamaTokenizer.encode(text);  // defaults: BOS, then a leading "▁"
    if (llamaTokenizer.decode(ids) !== text) throw new Error(`llama-tokenizer-js does not round-trip ${JSON.stringify(text)}`);
    llamaCases.push({ text, ids });
  }
  writeVectorFile(path.join(dataDir, 'llama_vectors.json'),
                  'llama-tokenizer-js@1.2.2 encode(text) with its defaults (BOS, leading space); ' +
                  'no special-token parsing', llamaCases);
  console.log(`wrote ${gpt2Cases.length} GPT-2 and ${llamaCases.length} LLaMA vectors to ${dataDir}`);
}

const mode = process.argv[2] ?? 'all';
if (!['all', 'vocab', 'vectors'].includes(mode)) {
  console.error('usage: node generate.mjs [vocab|vectors]');
  process.exit(2);
}
if (mode === 'all' || mode === 'vocab') {
  exportGpt2();
  exportLlama();
  console.log(`exported vocabularies to ${vocabDir}`);
}
if (mode === 'all' || mode === 'vectors') writeVectors();
