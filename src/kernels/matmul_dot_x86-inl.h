// x86 helpers shared by matmul_dot_avx2.cpp and matmul_dot_vnni.cpp: extracting 32 weight
// levels of a block with AVX2 and transposing 8 rows of quads. Included inside a Highway
// target namespace once per target pass, hence no include guard.

#ifndef RUVDLLM_UNROLL
// GCC at -O2 leaves short fixed loops rolled, which spills accumulator arrays to memory.
#define RUVDLLM_UNROLL _Pragma("GCC unroll 16")
#endif

// v[i] holds 8 quads of row i; afterwards v[q] holds quad q of rows 0..7.
HWY_INLINE void Transpose8x8(__m256i v[8]) {
  __m256i t[8], u[8];
  RUVDLLM_UNROLL
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
  }
  RUVDLLM_UNROLL
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  RUVDLLM_UNROLL
  for (int q = 0; q < 4; ++q) {
    v[q] = _mm256_permute2x128_si256(u[q], u[q + 4], 0x20);
    v[q + 4] = _mm256_permute2x128_si256(u[q], u[q + 4], 0x31);
  }
}

HWY_INLINE __m256i Load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The 32 stored levels of chunk c (32 values) of one weight block, as the kernels want them.
HWY_INLINE __m256i ChunkLevels(TensorType type, const uint8_t* block, int c) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  switch (type) {
    case TensorType::Q8_0:
      return Load256(block + offsetof(BlockQ8_0, qs));
    case TensorType::Q4_0: {
      const __m128i q =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + offsetof(BlockQ4_0, qs)));
      const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
      return _mm256_and_si256(both, low4);
    }
    case TensorType::Q4_K: {
      const __m256i q = Load256(block + offsetof(BlockQ4_K, qs) + 32 * (c / 2));
      return _mm256_and_si256(c % 2 ? _mm256_srli_epi16(q, 4) : q, low4);
    }
    case TensorType::Q5_K: {
      const __m256i q = Load256(block + offsetof(BlockQ5_K, qs) + 32 * (c / 2));
      const __m256i lo = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(q, 4) : q, low4);
      const __m256i qh = Load256(block + offsetof(BlockQ5_K, qh));
      // Bit c of qh byte l is the fifth bit of value 32c + l.
      const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, c), _mm256_set1_epi8(1));
      return _mm256_or_si256(lo, _mm256_slli_epi16(bit, 4));
    }
    default: {  // Q6_K: chunk c of half h = c / 4 takes nibble (c & 2) of ql, bits 2(c & 3) of qh
      const int half = c / 4, j = c % 4;
      const __m256i ql = Load256(block + offsetof(BlockQ6_K, ql) + 64 * half + 32 * (j & 1));
      const __m256i qh = Load256(block + offsetof(BlockQ6_K, qh) + 32 * half);
      const __m256i lo = _mm256_and_si256(j & 2 ? _mm256_srli_epi16(ql, 4) : ql, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), _mm256_set1_epi8(3));
      return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
  }
}
