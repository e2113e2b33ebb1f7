#pragma once
// The Hopper-only inline PTX of wgmma_gemm.cu (sm_90a): mbarriers, bulk tensor copies (TMA),
// warpgroup MMA (wgmma) and its shared-memory descriptors, and register reallocation between
// warpgroups. mma_sync.cuh has the sm_80 instructions the other tensor-core kernels use.
//
// The wgmma wrappers below list every accumulator as an operand (128 or 64 per thread), through
// the RUVDLLM_WGMMA_* macros.
#include <cuda.h>

#include <cstdint>

namespace ruvdllm::cuda::hopper {

__device__ inline uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ inline void store_shared(uint32_t address, uint4 v) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w)
               : "memory");
}

// --- mbarriers: a producer's "stage full" and the consumers' "stage free" signals ---------------
__device__ inline void barrier_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(arrivals)
               : "memory");
}
// Makes the initialised barriers visible to the copy engine before anyone uses them.
__device__ inline void barrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// Each barrier operation also takes the barrier's shared-space address (uint32_t), which a
// loop can work out once: from a generic pointer, every call converts it again.
// One arrival that also announces `bytes` still to land through bulk copies.
__device__ inline void barrier_arrive_expect_bytes(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
__device__ inline void barrier_arrive_expect_bytes(uint64_t* bar, uint32_t bytes) {
  barrier_arrive_expect_bytes(smem_address(bar), bytes);
}
__device__ inline void barrier_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ inline void barrier_arrive(uint64_t* bar) { barrier_arrive(smem_address(bar)); }
// Waits until the barrier's phase with this parity has completed. A fresh barrier counts its
// (never started) phase of parity 1 as complete, which is how a producer finds every stage
// free on its first lap.
__device__ inline void barrier_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ inline void barrier_wait(uint64_t* bar, uint32_t parity) {
  barrier_wait(smem_address(bar), parity);
}

// --- clusters: CTAs on neighbouring SMs that see each other's shared memory ------------------
__device__ inline uint32_t cluster_rank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}
// Every thread of every CTA of the cluster: orders shared-memory work (barrier set-up, the last
// remote arrivals) before any CTA goes on, or leaves while another may still write to it.
__device__ inline void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::
                   : "memory");
}
// One arrival on the barrier at the same shared-space address in the cluster's CTA `rank`.
__device__ inline void barrier_arrive_in_cta(uint32_t bar, uint32_t rank) {
  asm volatile(
      "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}\n" ::"r"(bar),
      "r"(rank)
      : "memory");
}

// --- bulk tensor copies ----------------------------------------------------------------------
// Copies the box at (column c0, row c1) of the tensor `map` describes into shared memory at
// dst (laid out and swizzled as the map says); its bytes complete on `bar`.
__device__ inline void tensor_load_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                      uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ inline void tensor_load_2d(void* dst, const CUtensorMap* map, int c0, int c1,
                                      uint64_t* bar) {
  tensor_load_2d(smem_address(dst), map, c0, c1, smem_address(bar));
}
// The same box copied into shared memory at dst of every CTA of the cluster in cta_mask (bit r:
// rank r), each completing its bytes on its own barrier at `bar`.
__device__ inline void tensor_load_2d_multicast(uint32_t dst, const CUtensorMap* map, int c0,
                                                int c1, uint32_t bar, uint16_t cta_mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar), "h"(cta_mask)
      : "memory");
}
__device__ inline void tensor_map_prefetch(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Orders this thread's ordinary shared-memory stores before later reads by the async proxy
// (wgmma, bulk copies); each writing thread runs it before signalling the barrier.
__device__ inline void fence_shared_for_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// --- warpgroup MMA -----------------------------------------------------------------------------
// Descriptor of a K-major operand tile whose rows are 64 bf16 (128 bytes) written by a copy
// with the 128-byte swizzle: groups of 8 rows lie 1024 bytes apart. `tile` must be
// 1024-byte aligned except for the k offset (16 values = 32 bytes per step) added to it.
__device__ inline uint64_t swizzled_tile_descriptor(const void* tile) {
  const uint64_t address = smem_address(tile);
  uint64_t desc = (address & 0x3FFFF) >> 4;  // start address, 16-byte units
  desc |= uint64_t{16 >> 4} << 16;           // leading byte offset (unused with this swizzle)
  desc |= uint64_t{1024 >> 4} << 32;         // stride byte offset: one 8-row group
  desc |= uint64_t{1} << 62;                 // layout: 128-byte swizzle
  return desc;
}
__device__ inline void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ inline void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int Pending>
__device__ inline void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}
// Keeps the compiler from moving reads or writes of the accumulators across a wgmma wait.
template <int N>
__device__ inline void fence_accumulators(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// --- register reallocation between the producer and the consumer warpgroups ------------------
template <int Registers>
__device__ inline void registers_release() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Registers));
}
template <int Registers>
__device__ inline void registers_claim() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Registers));
}

// wgmma's accumulator operands: the "+f" constraint of d[o] .. d[o + 15], and the operand
// numbers of accumulators [a, b) in the instruction's text. Written out by a script, because PTX
// has no register-range syntax.
// clang-format off
#define RUVDLLM_WGMMA_ACC16(d, o) "+f"(d[o + 0]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), "+f"(d[o + 6]), "+f"(d[o + 7]), "+f"(d[o + 8]), "+f"(d[o + 9]), "+f"(d[o + 10]), "+f"(d[o + 11]), "+f"(d[o + 12]), "+f"(d[o + 13]), "+f"(d[o + 14]), "+f"(d[o + 15])
#define RUVDLLM_WGMMA_ACC64(d, o)                                                             \
  RUVDLLM_WGMMA_ACC16(d, o), RUVDLLM_WGMMA_ACC16(d, o + 16), RUVDLLM_WGMMA_ACC16(d, o + 32), \
      RUVDLLM_WGMMA_ACC16(d, o + 48)
#define RUVDLLM_WGMMA_REGS_0_64 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define RUVDLLM_WGMMA_REGS_64_128 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
// clang-format on

// d += a·b for one m64n256k16 step of the warpgroup (128 f32 accumulators per thread);
// scale_d = 0 starts the sum instead (d = a·b).
__device__ inline void wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                        int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" RUVDLLM_WGMMA_REGS_0_64
      ", " RUVDLLM_WGMMA_REGS_64_128 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
      : RUVDLLM_WGMMA_ACC64(d, 0), RUVDLLM_WGMMA_ACC64(d, 64)
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// d += a·b for one m64n128k16 step of the warpgroup (64 f32 accumulators per thread);
// scale_d = 0 starts the sum instead (d = a·b).
__device__ inline void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                        int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" RUVDLLM_WGMMA_REGS_0_64
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : RUVDLLM_WGMMA_ACC64(d, 0)
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// The same with the A tile (64 weight rows × 16 values) in registers, four bf16 pairs per thread
// in mma.sync's A-fragment layout: row 16·warp + lane / 4 (+ 8 for a[1], a[3]), values
// 2·(lane % 4) .. + 1 (+ 8 for a[2], a[3]). The registers are read asynchronously: they must keep
// their values until a wgmma_wait covers this step.
__device__ inline void wgmma_m64n256k16_registers(float (&d)[128], const uint32_t* a,
                                                  uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {" RUVDLLM_WGMMA_REGS_0_64
      ", " RUVDLLM_WGMMA_REGS_64_128 "}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
      : RUVDLLM_WGMMA_ACC64(d, 0), RUVDLLM_WGMMA_ACC64(d, 64)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

// m64n128k16 with the A tile in registers (as wgmma_m64n256k16_registers).
__device__ inline void wgmma_m64n128k16_registers(float (&d)[64], const uint32_t* a,
                                                  uint64_t desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" RUVDLLM_WGMMA_REGS_0_64
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : RUVDLLM_WGMMA_ACC64(d, 0)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

}  // namespace ruvdllm::cuda::hopper
