/* attention_fwd_cpu.c: the flash-attention forward for vector CPUs, as a kernel family: its tuning
 * space, its constraints, its default, and the generator of one job (one tile of query rows of one
 * batch and head, or with pack_gqa of one KV head's group of query heads; with split-KV, over one part
 * of the keys).
 *
 * The algorithm is FlashAttention's: the Q tile stays resident while K and V stream through in tiles of
 * block_n keys; each K tile gives a block of scores, the running row maximum and row sum are updated
 * (online softmax in base 2, the scale folded into Q), and the output accumulator is rescaled and
 * accumulates P V. On a CPU the scores are transposed: queries run across vector lanes, so a score
 * tile is block_n rows (keys) of block_m/lanes vectors (queries) and the softmax statistics of a query
 * are lane-wise; both products are broadcast-FMAs:
 *     S^T[n][queries] += K[n][d] * Q^T[d][queries]       (Q^T packed once per job, pre-scaled)
 *     O[query][d]     += P^T[n][query] * V[n][d]          (O in scratch, register blocks of rows x d)
 * The score tile is computed in chunks of keys that fit the registers and kept in scratch until the
 * tile's maximum is known, so a tile may hold more keys than the registers: P.V then loads, rescales
 * and stores each block of O once per tile of block_n keys. K and V tiles are first packed into fp32
 * scratch (converting fp16/bf16 once, zero-padding past the sequence end), which keeps the inner loops
 * free of conversions and edge cases. With bf16_dot (bf16 inputs on a CPU with AVX512-BF16) both
 * products take pairs of the reduced dimension per fp32 lane instead, twice the products per
 * instruction: Q^T as pairs of d per query, K's rows as they are (each key's pair of d broadcast), P^T
 * rounded to bf16 as pairs of keys per query, and V's rows interleaved in pairs of keys; the scale is
 * applied to the scores rather than folded into Q, which stays exact. A split-KV job leaves its fp32
 * output and base-2 LSE in the runtime's workspace instead (src/runtime/split_kv.c combines the
 * parts). Logit soft-capping passes each score through a scaled tanh before the masks, and ALiBi then
 * subtracts the row's slope times the key's distance from its diagonal; an attention sink is one more
 * term of a row's sum, added in the epilogue. Ragged queries (cu_seqlens_q) and packed keys
 * (cu_seqlens_k) start a sequence's rows of q and o, or of k and v, at its offset. V and O may have a
 * head dim of their own (MLA's dv): K's packed rows are d wide, V's and O's dv (padded to whole vectors). */
#include "kernels/kernel_family.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "kernels/attention_fwd_cpu_abi.h"
#include "tile/tile.h"

enum { P_BLOCK_M, P_BLOCK_N, P_UNROLL, P_VECTOR, P_PV_ROWS, P_PV_VECTORS, P_PACK_GQA, P_BF16_DOT, P_COUNT };

static const kernel_param params[P_COUNT] = {
    [P_BLOCK_M] = {"block_m", "queries per job (a multiple of vector)", 6, {8, 16, 24, 32, 48, 64}},
    [P_BLOCK_N] = {"block_n", "keys per K/V tile", 9, {4, 6, 8, 10, 12, 16, 20, 24, 28}},
    [P_UNROLL] = {"unroll", "head-dim steps per inner-loop iteration", 3, {1, 2, 4}},
    [P_VECTOR] = {"vector", "fp32 lanes per vector (8: AVX2, 16: AVX-512)", 2, {8, 16}},
    [P_PV_ROWS] = {"pv_rows", "queries per P.V register block", 5, {2, 3, 4, 6, 8}},
    [P_PV_VECTORS] = {"pv_vectors", "head-dim vectors per P.V register block", 3, {1, 2, 4}},
    [P_PACK_GQA] = {"pack_gqa", "1: a job's queries are the query heads of one KV head at each position",
                    2, {0, 1}, .optional = 1},
    [P_BF16_DOT] = {"bf16_dot", "1: bf16 products in pairs (AVX512-BF16's dot; P rounded to bf16 for P.V)", 2,
                    {0, 1}, .optional = 1},
};

#define GENERATOR_VERSION 15

/* Vector registers the score loop needs for `keys` keys: the score tile, one Q^T row, the row
 * statistics, and a broadcast; soft-capping adds its two factors and tanh's temporaries beside the
 * tile. Over the target's count, the tile spills in the hot loop. */
static int registers_needed(const attention_key *key, int block_m, int keys, int lanes) {
  int vectors = block_m / lanes;
  return keys * vectors + 2 * vectors + 1 + (key->softcap ? 4 : 0);
}

/* Keys per chunk of a tile's scores: a tile of more keys than the registers hold is scored in equal
 * chunks (the most keys that fit and divide the tile), so that P.V, which loads, rescales and stores
 * its O accumulator once per tile, runs over the whole tile (see default_config). 0 when no such chunk
 * holds MIN_CHUNK keys: chunks that short leave too few independent sums to hide the FMA latency, and
 * the tuner need not try them. */
#define MIN_CHUNK 4
static int score_chunk(const attention_key *key, const jit_target *target, int block_m, int block_n, int lanes) {
  int chunk = block_n;
  while (chunk > 0 && (block_n % chunk != 0 || registers_needed(key, block_m, chunk, lanes) > target->vector_registers))
    chunk--;
  return chunk == block_n || chunk >= MIN_CHUNK ? chunk : 0;
}

/* Head dim rounded up to whole vectors: rows of V and O are kept that wide (zero-padded) so that the
 * P.V microkernel only ever touches whole vectors. */
static int padded_head_dim(int head_dim, int lanes) { return (head_dim + lanes - 1) / lanes * lanes; }

static int config_valid(const attention_key *key, const jit_target *target, const kernel_config *config,
                        char *why, size_t why_size);

/* The d steps the score loop takes per iteration: unroll, but two for unroll=1 wherever unroll=2 is valid
 * (see same_kernel_as). */
static int steps_per_iteration(const attention_key *key, const jit_target *target, const kernel_config *config) {
  if (config->values[P_UNROLL] != 1) return config->values[P_UNROLL];
  kernel_config twin = *config;
  twin.values[P_UNROLL] = 2;
  char ignored[256];
  return config_valid(key, target, &twin, ignored, sizeof ignored) ? 2 : 1;
}

static int config_valid(const attention_key *key, const jit_target *target, const kernel_config *config,
                        char *why, size_t why_size) {
  int block_m = config->values[P_BLOCK_M], block_n = config->values[P_BLOCK_N];
  int unroll = config->values[P_UNROLL], lanes = config->values[P_VECTOR];
  if (lanes * 32 > target->vector_bits) {
    snprintf(why, why_size, "vector=%d needs %d-bit vectors; %s has %d", lanes, lanes * 32, target->cpu,
             target->vector_bits);
    return 0;
  }
  if (block_m % lanes != 0) {
    snprintf(why, why_size, "block_m=%d is not a multiple of vector=%d", block_m, lanes);
    return 0;
  }
  if (key->head_dim % unroll != 0) {
    snprintf(why, why_size, "unroll=%d does not divide head_dim=%d", unroll, key->head_dim);
    return 0;
  }
  if (score_chunk(key, target, block_m, block_n, lanes) == 0) {
    snprintf(why, why_size,
             "block_m=%d block_n=%d vector=%d: the scores of all %d keys need %d vector registers (%s has %d), and "
             "no smaller chunk that divides %d and holds at least %d keys fits",
             block_m, block_n, lanes, block_n, registers_needed(key, block_m, block_n, lanes), target->cpu,
             target->vector_registers, block_n, MIN_CHUNK);
    return 0;
  }
  int pv_rows = config->values[P_PV_ROWS], pv_vectors = config->values[P_PV_VECTORS];
  int pv_needed = pv_rows * pv_vectors + pv_vectors + 1;
  if (pv_needed > target->vector_registers) {
    snprintf(why, why_size, "pv_rows=%d pv_vectors=%d needs %d vector registers; %s has %d", pv_rows,
             pv_vectors, pv_needed, target->cpu, target->vector_registers);
    return 0;
  }
  if (pv_rows > block_m) {
    snprintf(why, why_size, "pv_rows=%d exceeds block_m=%d", pv_rows, block_m);
    return 0;
  }
  if (config->values[P_BF16_DOT]) {
    if (key->dtype != DTYPE_BF16) {
      snprintf(why, why_size, "bf16_dot=1 needs bf16 inputs; dtype=%s", core_dtype_name((dtype_id)key->dtype));
      return 0;
    }
    if (!target->has_avx512bf16 || lanes != 16) {
      snprintf(why, why_size, "bf16_dot=1 needs AVX512-BF16 and vector=16; %s has %s, vector=%d", target->cpu,
               target->has_avx512bf16 ? "AVX512-BF16" : "no AVX512-BF16", lanes);
      return 0;
    }
    if (key->head_dim % (2 * unroll) != 0) {
      snprintf(why, why_size, "bf16_dot=1 with unroll=%d steps through head_dim %d elements at a time; head_dim=%d",
               unroll, 2 * unroll, key->head_dim);
      return 0;
    }
  }
  if (config->values[P_PACK_GQA] && key->heads == key->kv_heads) {
    snprintf(why, why_size, "pack_gqa=1 needs grouped KV heads; heads=%d, kv_heads=%d", key->heads,
             key->kv_heads);
    return 0;
  }
  return 1;
}

/* Configs that compile to another's kernel, so that the tuner times each kernel once (a third of the
 * space at d = 64):
 * - unroll=1 where unroll=2 is valid: generated as unroll=2 (steps_per_iteration). LLVM's loop unroller
 *   ran the score chunk's d loop two steps per iteration either way on znver5 (the same instruction
 *   counts, +-2 of ~2000, fp32 and bf16 pairs, d = 64 to 256), but not everywhere on Emerald Rapids
 *   (2026-12-07: 1% more instructions and 8% more products at fp32 d = 80 and bf16 d = 256), so the
 *   generator does it itself and the twins are one kernel on every host;
 * - pv_vectors of more than a row of V's vectors: P.V's one block per row is the same with the fewest
 *   listed values that still cover the row (pv_vectors=4 is pv_vectors=2 at d = 32 and vector=16). */
static int same_kernel_as(const attention_key *key, const jit_target *target, const kernel_config *config,
                          kernel_config *out, char *why, size_t why_size) {
  *out = *config;
  char ignored[256];
  if (config->values[P_UNROLL] == 1) {
    kernel_config twin = *config;
    twin.values[P_UNROLL] = 2;
    if (config_valid(key, target, &twin, ignored, sizeof ignored)) {
      *out = twin;
      snprintf(why, why_size, "unroll=1 compiles as unroll=2: the d loop takes two steps an iteration either way");
      return 1;
    }
  }
  int row_vectors = padded_head_dim(core_key_head_dim_v(key), config->values[P_VECTOR]) / config->values[P_VECTOR];
  const kernel_param *pv = &params[P_PV_VECTORS];
  for (int i = 0; i < pv->num_values && pv->values[i] < config->values[P_PV_VECTORS]; i++)
    if (pv->values[i] >= row_vectors) {
      out->values[P_PV_VECTORS] = pv->values[i];
      snprintf(why, why_size, "pv_vectors=%d covers a row of %d vectors as pv_vectors=%d does",
               config->values[P_PV_VECTORS], row_vectors, pv->values[i]);
      return 1;
    }
  return 0;
}

/* Several query vectors (two where the target has 16 registers, with as many keys as they hold):
 * each broadcast feeds as many FMAs, and the K/V packing is amortized over their queries. Grouped
 * heads are packed (a decode step's queries then share one pass over K/V; prefill is as fast either
 * way); a job with at most one vector of queries (decode) takes one vector, tiles of 6 keys, and P.V
 * blocks of 4 queries, a common group size. (Decode steps of Llama-3-8B/70B shapes on a 2-core
 * znver5, 2026-12-06: 6-key tiles were 3-22% faster than the 28 the registers hold, fp32 and bf16,
 * packed or not; the tuner found them first.) */
static void default_config(const attention_key *key, const jit_target *target, kernel_config *out) {
  memset(out, 0, sizeof *out);
  int lanes = target->vector_bits >= 512 ? 16 : 8;
  int pack_gqa = key->heads > key->kv_heads;
  int few_rows = key->seqlen_bucket <= 4 &&
                 ((int64_t)1 << key->seqlen_bucket) * (pack_gqa ? key->heads / key->kv_heads : 1) <= lanes;
  int block_m = few_rows ? lanes : 2 * lanes;
  int block_n = 4;
  for (int i = 0; i < params[P_BLOCK_N].num_values; i++) {
    int candidate = params[P_BLOCK_N].values[i];
    if (registers_needed(key, block_m, candidate, lanes) <= target->vector_registers) block_n = candidate;
  }
  /* With 32 registers, prefill takes four query vectors and tiles of 24 keys, scored in chunks: each K
   * element and each pass over O then serves twice the products (2-core znver5, 2026-12-06: 8-26%
   * faster than 2 vectors x 12 keys, fp32 and bf16, d = 64 to 256). */
  int64_t slot_rows = ((int64_t)1 << (key->seqlen_bucket < 20 ? key->seqlen_bucket : 20)) *
                      (pack_gqa ? key->heads / key->kv_heads : 1);
  if (!few_rows && target->vector_registers >= 32) {
    block_m = slot_rows >= 4 * lanes ? 4 * lanes : 2 * lanes;
    block_n = 24;
  }
  if (few_rows) block_n = 6;
  out->values[P_BLOCK_M] = block_m;
  out->values[P_BLOCK_N] = block_n;
  out->values[P_UNROLL] = key->head_dim % 2 == 0 ? 2 : 1;
  out->values[P_VECTOR] = lanes;
  /* P.V: as many independent accumulators as fit beside one row of V and a broadcast. */
  out->values[P_PV_ROWS] = few_rows ? 4 : 6;
  out->values[P_PV_VECTORS] = target->vector_registers >= 32 ? 4 : 2;
  out->values[P_PACK_GQA] = pack_gqa;
  /* bf16 products in pairs where the CPU runs them faster than FMAs (twice the products per instruction
   * at the FMA's rate on Zen 5; at half of it on Emerald Rapids, where fp32 tiles are 1.5x faster);
   * unroll drops to 1 where pairs of two steps do not divide d */
  if (key->dtype == DTYPE_BF16 && target->bf16_dot_fast && lanes == 16 && key->head_dim % 2 == 0) {
    out->values[P_BF16_DOT] = 1;
    if (key->head_dim % 4 != 0) out->values[P_UNROLL] = 1;
  }
  /* in the form the tuner searches (a short head dim's row is fewer than pv_vectors vectors) */
  kernel_config twin;
  char why[160];
  if (same_kernel_as(key, target, out, &twin, why, sizeof why)) *out = twin;
}

static void codegen_key(const attention_key *key, char *buffer, size_t size) {
  char extra[96];
  core_key_extra_text(key, extra, sizeof extra);
  snprintf(buffer, size, "dtype=%s d=%d causal=%d%s lse=%d dcontig=%d%s%s", core_dtype_name((dtype_id)key->dtype),
           key->head_dim, key->causal, key->window ? " window=1" : "", key->has_lse, key->d_contiguous,
           key->varlen_q ? " varlen_q=1" : "", extra);
}

/* A job's queries are block_m rows of one (batch, head slot): with pack_gqa a slot is a KV head and its
 * rows run over (position, query head of the group), position-major; without, a slot is a query head
 * and its rows are positions. Packing lets the few queries of a decode step share one pass over K/V. */
static int64_t job_count(const attention_problem *problem, const kernel_config *config) {
  return kernel_row_tile_jobs(problem, config->values[P_BLOCK_M], config->values[P_PACK_GQA]);
}

/* The per-thread scratch, in floats, in this order: Q^T [d][block_m] (pre-scaled), O [block_m][dp],
 * packed K [block_n][d], packed V [block_n][dp], P^T [block_n][block_m], the scores S^T
 * [block_n][block_m] of a tile of several chunks, the rescale factors [block_m], the final
 * statistics [2][block_m], ALiBi's per-row slopes and diagonal keys [2][block_m], and the additive bias's
 * per-row offsets [block_m] (int64; block_m is even, so each region starts 8-byte aligned). */
typedef struct scratch_layout {
  size_t q_t, o, k, v, p_t, s_t, alpha, stats, alibi, bias, total;
} scratch_layout;

static scratch_layout layout_scratch(int head_dim, int head_dim_v, int block_m, int block_n, int lanes) {
  size_t d = (size_t)head_dim, dvp = (size_t)padded_head_dim(head_dim_v, lanes);
  size_t bm = (size_t)block_m, bn = (size_t)block_n;
  scratch_layout l;
  l.q_t = 0;
  l.o = l.q_t + d * bm;
  l.k = l.o + bm * dvp;
  l.v = l.k + bn * d;
  l.p_t = l.v + bn * dvp;
  l.s_t = l.p_t + bn * bm;
  l.alpha = l.s_t + bn * bm;
  l.stats = l.alpha + bm;
  l.alibi = l.stats + 2 * bm;  /* ALiBi: each row's -slope log2 e, then its diagonal key */
  l.bias = l.alibi + 2 * bm;   /* an additive bias: each row's first element, an int64 (2 floats) */
  l.total = l.bias + 2 * bm;
  return l;
}

static size_t scratch_bytes(const attention_key *key, const kernel_config *config) {
  return layout_scratch(key->head_dim, core_key_head_dim_v(key), config->values[P_BLOCK_M], config->values[P_BLOCK_N],
                        config->values[P_VECTOR]).total * sizeof(float);
}

/* ---- the generator ---------------------------------------------------------------------------------- */

/* A tensor as the kernel sees it: base pointer and strides along (batch, seq, head, dim). */
typedef struct tensor_ir {
  LLVMValueRef base;
  LLVMValueRef stride[4];
} tensor_ir;

static tensor_ir load_tensor(tile_builder *tb, LLVMValueRef block, size_t pointer_offset,
                             size_t stride_offset, int d_contiguous) {
  tensor_ir t;
  t.base = tile_load_param_ptr(tb, block, pointer_offset);
  for (int i = 0; i < 4; i++)
    t.stride[i] = tile_load_param_i64(tb, block, stride_offset + (size_t)i * sizeof(int64_t));
  /* A compile-time unit stride lets the packing loops load whole vectors. */
  if (d_contiguous) t.stride[3] = tile_i64(tb, 1);
  return t;
}

/* Element index of [b, s, h, 0]. */
static LLVMValueRef row_index(tile_builder *tb, const tensor_ir *t, LLVMValueRef b, LLVMValueRef s,
                              LLVMValueRef h) {
  LLVMValueRef index = tile_mul(tb, b, t->stride[0]);
  index = tile_add(tb, index, tile_mul(tb, s, t->stride[1]));
  return tile_add(tb, index, tile_mul(tb, h, t->stride[2]));
}

/* Where one sequence's keys live: row key of batch b of k and v (with packed keys row start + key, the
 * batch stride being 0), or in a paged cache (page_size > 0) row key % page_size of the page its
 * block-table row names for key / page_size. */
typedef struct key_rows {
  int page_size;
  LLVMValueRef b;
  LLVMValueRef start;                       /* packed keys: the sequence's first row; else NULL */
  LLVMValueRef table, table_stride, pages;  /* paged: this sequence's row of the block table */
} key_rows;

/* The page (i64) block-table entry `entry` of this sequence names. */
static LLVMValueRef table_page(tile_builder *tb, const key_rows *kr, LLVMValueRef entry) {
  LLVMValueRef at = tile_mul(tb, entry, kr->table_stride);
  LLVMValueRef page = LLVMBuildLoad2(tb->b, tb->i32, LLVMBuildInBoundsGEP2(tb->b, tb->i32, kr->table, &at, 1, ""), "page");
  /* The table does not change during the call: LLVM may reuse a load across the stores to scratch. */
  unsigned invariant = LLVMGetMDKindIDInContext(tb->ctx, "invariant.load", 14);
  LLVMSetMetadata(page, invariant, LLVMMetadataAsValue(tb->ctx, LLVMMDNodeInContext2(tb->ctx, NULL, 0)));
  /* validated on the host; an entry out of range (however it changed since) reads page 0, never
   * outside k and v */
  page = LLVMBuildSExt(tb->b, page, tb->i64, "");
  return LLVMBuildSelect(tb->b, LLVMBuildICmp(tb->b, LLVMIntULT, page, kr->pages, ""), page, tile_i64(tb, 0), "");
}

/* Element index of [key's place, h, 0] in t (k or v). */
static LLVMValueRef key_row_index(tile_builder *tb, const key_rows *kr, const tensor_ir *t, LLVMValueRef key,
                                  LLVMValueRef h) {
  if (kr->page_size == 0)
    return row_index(tb, t, kr->b, kr->start != NULL ? tile_add(tb, kr->start, key) : key, h);
  LLVMValueRef page_size = tile_i64(tb, kr->page_size);
  LLVMValueRef page = table_page(tb, kr, LLVMBuildSDiv(tb->b, key, page_size, ""));
  return row_index(tb, t, page, LLVMBuildSRem(tb->b, key, page_size, ""), h);
}

/* Pages of no fewer keys than a tile: the tile's keys lie on at most two pages, and the keys one tile
 * ahead on those or the next, so three table reads per tile place them all (instead of two per key).
 * Key first + i (i < 2 block_n) is at offset + i from the start of the first page; past a page's end
 * it is on the next. */
typedef struct tile_pages {
  LLVMValueRef offset;   /* first % page_size */
  LLVMValueRef page[3];  /* the pages of entries first / page_size + 0, 1, 2 (clamped to the sequence's
                          * last entry: only entries the sequence reads are read) */
} tile_pages;

static tile_pages tile_pages_of(tile_builder *tb, const key_rows *kr, LLVMValueRef first, LLVMValueRef seqlen) {
  tile_pages tp;
  LLVMValueRef page_size = tile_i64(tb, kr->page_size);
  LLVMValueRef entry = LLVMBuildSDiv(tb->b, first, page_size, "");
  LLVMValueRef last = LLVMBuildSDiv(tb->b, tile_sub(tb, seqlen, tile_i64(tb, 1)), page_size, "");
  for (int i = 0; i < 3; i++) tp.page[i] = table_page(tb, kr, tile_min(tb, tile_add(tb, entry, tile_i64(tb, i)), last));
  tp.offset = LLVMBuildSRem(tb->b, first, page_size, "");
  return tp;
}

/* For t (k or v) and head h: the element index of key first + 0 as if each of the three pages held it,
 * so that key first + i is base[w] + i * stride[1] on page w. */
static void tile_page_bases(tile_builder *tb, const tile_pages *tp, int page_size, const tensor_ir *t, LLVMValueRef h,
                            LLVMValueRef base[3]) {
  for (int w = 0; w < 3; w++) {
    LLVMValueRef row = tile_sub(tb, tp->offset, tile_i64(tb, (int64_t)w * page_size));
    base[w] = tile_add(tb, tile_add(tb, tile_mul(tb, tp->page[w], t->stride[0]), tile_mul(tb, h, t->stride[2])),
                       tile_mul(tb, row, t->stride[1]));
  }
}

static LLVMValueRef tile_page_row(tile_builder *tb, const tile_pages *tp, int page_size, const tensor_ir *t,
                                  const LLVMValueRef base[3], LLVMValueRef i) {
  LLVMValueRef at = tile_add(tb, tp->offset, i);
  LLVMValueRef second = LLVMBuildICmp(tb->b, LLVMIntSGE, at, tile_i64(tb, page_size), "");
  LLVMValueRef third = LLVMBuildICmp(tb->b, LLVMIntSGE, at, tile_i64(tb, 2 * (int64_t)page_size), "");
  LLVMValueRef chosen = LLVMBuildSelect(tb->b, third, base[2], LLVMBuildSelect(tb->b, second, base[1], base[0], ""), "");
  return tile_add(tb, chosen, tile_mul(tb, i, t->stride[1]));
}

#define MAX_VECTORS 8  /* block_m / vector at most */
#define MAX_LANES 16
#define MAX_PV_BLOCK 32

typedef struct shape {
  int block_m, block_n, unroll, lanes, vectors, head_dim, causal, window, has_lse, d_contiguous, pack_gqa, page_size;
  int head_dim_v;  /* V's and O's (MLA's differs from Q's and K's) */
  int varlen_q, varlen_k, alibi;
  int bias;             /* key.bias: an additive bias, of bias_dtype */
  dtype_id bias_dtype;
  int pv_rows, pv_vectors;
  int bf16_dot;  /* packed K, V, Q^T and P^T hold bf16 bits, multiplied in pairs */
  dtype_id dtype;
  dtype_id kv_dtype;  /* k's and v's: dtype, or an fp8 cache's (converted as its tiles are packed) */
} shape;

/* Which query a job's row is: rows run over positions, and with pack_gqa over the query heads of one
 * KV head within each position. */
typedef struct query_rows {
  LLVMValueRef rows_per_position;  /* the group size when packed, else 1 */
  LLVMValueRef first_head;         /* the query head of row 0 */
} query_rows;

static void row_query(tile_builder *tb, const query_rows *qr, LLVMValueRef row, LLVMValueRef *position,
                      LLVMValueRef *head) {
  *position = LLVMBuildSDiv(tb->b, row, qr->rows_per_position, "");
  *head = tile_add(tb, qr->first_head, LLVMBuildSRem(tb->b, row, qr->rows_per_position, ""));
}

static LLVMValueRef scratch_region(tile_builder *tb, LLVMValueRef scratch, size_t offset_floats) {
  LLVMValueRef index = tile_i64(tb, (int64_t)offset_floats);
  return LLVMBuildInBoundsGEP2(tb->b, tb->f32, scratch, &index, 1, "");
}

static void fill_zero(tile_builder *tb, LLVMValueRef base, int64_t floats) {
  tile_loop zl;
  LLVMValueRef i = tile_for(tb, &zl, tile_i64(tb, 0), tile_i64(tb, floats), tile_i64(tb, tb->lanes), "z");
  tile_store_vector(tb, base, i, tile_splat_f32(tb, 0.0f));
  tile_end_for(tb, &zl);
}

/* One row of one head of K or V (its `dim` elements at element `source`, prefetching `ahead`) into the
 * packed tile at packed_row, zero-padded from dim to row_elements: as fp32, or with bf16_dot as the bf16
 * bits (an fp8 cache's elements converted, which bf16 holds exactly). */
static void pack_row(tile_builder *tb, const shape *s, const tensor_ir *t, int dim, LLVMValueRef source,
                     LLVMValueRef ahead, LLVMValueRef packed, LLVMValueRef packed_row, int row_elements) {
  const dtype_id kv = s->kv_dtype;
  for (int d = 0; d < dim; d += 64 / (int)core_dtype_size(kv))
    tile_prefetch(tb, t->base, tile_add(tb, ahead, tile_mul(tb, tile_i64(tb, d), t->stride[3])), kv);
  int copy_bits = s->bf16_dot && kv == DTYPE_BF16, to_bits = s->bf16_dot && kv != DTYPE_BF16;
  if (s->d_contiguous && dim % s->lanes == 0) {
    for (int d = 0; d < dim; d += s->lanes) {
      LLVMValueRef from = tile_add(tb, source, tile_i64(tb, d)), to = tile_add(tb, packed_row, tile_i64(tb, d));
      if (copy_bits)
        tile_store_bits(tb, packed, to, tile_load_bits(tb, t->base, from, s->lanes));
      else if (to_bits)
        tile_store_bits(tb, packed, to, tile_exact_bf16_bits(tb, tile_load_vector(tb, t->base, from, kv)));
      else
        tile_store_vector(tb, packed, to, tile_load_vector(tb, t->base, from, kv));
    }
  } else {
    tile_loop dl;
    LLVMValueRef d = tile_for(tb, &dl, tile_i64(tb, 0), tile_i64(tb, dim), tile_i64(tb, 1), "d");
    LLVMValueRef from = tile_add(tb, source, tile_mul(tb, d, t->stride[3])), to = tile_add(tb, packed_row, d);
    if (copy_bits)
      tile_store_bits(tb, packed, to, tile_load_bits(tb, t->base, from, 1));
    else if (to_bits)
      tile_store_bits(tb, packed, to, tile_exact_bf16_bits(tb, tile_load_element(tb, t->base, from, kv)));
    else
      tile_store_f32(tb, packed, to, tile_load_element(tb, t->base, from, kv));
    tile_end_for(tb, &dl);
  }
  for (int d = dim; d < row_elements; d++) {
    LLVMValueRef to = tile_add(tb, packed_row, tile_i64(tb, d));
    if (s->bf16_dot)
      tile_store_bits(tb, packed, to, LLVMConstInt(tb->i16, 0, 0));
    else
      tile_store_f32(tb, packed, to, tile_f32(tb, 0.0f));
  }
}

static void zero_row(tile_builder *tb, const shape *s, LLVMValueRef packed, LLVMValueRef packed_row, int row_elements) {
  for (int d = 0; d + s->lanes <= row_elements; d += s->lanes) {
    LLVMValueRef to = tile_add(tb, packed_row, tile_i64(tb, d));
    if (s->bf16_dot)
      tile_store_bits(tb, packed, to, LLVMConstNull(LLVMVectorType(tb->i16, (unsigned)s->lanes)));
    else
      tile_store_vector(tb, packed, to, tile_splat_f32(tb, 0.0f));
  }
  for (int d = row_elements - row_elements % s->lanes; d < row_elements; d++) {
    LLVMValueRef to = tile_add(tb, packed_row, tile_i64(tb, d));
    if (s->bf16_dot)
      tile_store_bits(tb, packed, to, LLVMConstInt(tb->i16, 0, 0));
    else
      tile_store_f32(tb, packed, to, tile_f32(tb, 0.0f));
  }
}

/* Copies keys [first, first + block_n) of one KV head of t (K or V, rows of `dim` elements) into packed
 * [block_n][row_elements] (fp32, or bf16 with bf16_dot); keys at or past seqlen, and the padding past d, are zeros so that every product
 * stays finite (the scores of missing keys are masked anyway). pages: a paged cache's tile placement
 * (tile_pages_of, pages of at least a tile) or NULL (each key placed alone). K's and V's tiles are
 * packed one after the other: interleaving their rows was 3-5% slower on a decode step. */
static void pack_kv_tile(tile_builder *tb, const shape *s, const tensor_ir *t, int dim, const key_rows *kr,
                         const tile_pages *pages, LLVMValueRef first, LLVMValueRef kv_head, LLVMValueRef seqlen,
                         LLVMValueRef packed, int row_elements) {
  LLVMValueRef base[3];
  if (pages != NULL) tile_page_bases(tb, pages, kr->page_size, t, kv_head, base);
  tile_loop nl;
  LLVMValueRef n = tile_for(tb, &nl, tile_i64(tb, 0), tile_i64(tb, s->block_n), tile_i64(tb, 1), "key");
  {
    LLVMValueRef key = tile_add(tb, first, n);
    LLVMValueRef packed_row = tile_mul(tb, n, tile_i64(tb, row_elements));
    tile_if inside;
    LLVMValueRef present = tile_lt(tb, key, seqlen);
    LLVMBasicBlockRef zero_block = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "pad");
    LLVMBasicBlockRef copy_block = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "copy");
    inside.done = LLVMAppendBasicBlockInContext(tb->ctx, tb->function, "packed");
    LLVMBuildCondBr(tb->b, present, copy_block, zero_block);

    LLVMPositionBuilderAtEnd(tb->b, copy_block);
    /* The same row one tile ahead: rows of one head lie kv_heads * head_dim elements apart, so a
     * decode step's pass over K/V crosses a page every few rows and outruns the hardware prefetcher.
     * (A paged cache's block table is only read for keys that exist: the last one stands in.) */
    LLVMValueRef row, ahead;
    if (pages != NULL) {
      row = tile_page_row(tb, pages, kr->page_size, t, base, n);
      ahead = tile_page_row(tb, pages, kr->page_size, t, base, tile_add(tb, n, tile_i64(tb, s->block_n)));
    } else {
      LLVMValueRef ahead_key = tile_add(tb, key, tile_i64(tb, s->block_n));
      if (kr->page_size > 0) ahead_key = tile_min(tb, ahead_key, tile_sub(tb, seqlen, tile_i64(tb, 1)));
      row = key_row_index(tb, kr, t, key, kv_head);
      ahead = key_row_index(tb, kr, t, ahead_key, kv_head);
    }
    pack_row(tb, s, t, dim, row, ahead, packed, packed_row, row_elements);
    LLVMBuildBr(tb->b, inside.done);

    LLVMPositionBuilderAtEnd(tb->b, zero_block);
    zero_row(tb, s, packed, packed_row, row_elements);
    LLVMBuildBr(tb->b, inside.done);
    LLVMPositionBuilderAtEnd(tb->b, inside.done);
  }
  tile_end_for(tb, &nl);
}

/* S^T for keys [c0, c0 + cn) of the tile, in registers (`scores`), then to rows c0 .. c0 + cn - 1 of
 * s_t: for each step of d, one row of Q^T against a broadcast of each key's element (with bf16_dot,
 * for each pair of d: Q^T's pairs against each key's pair; the scale comes after). */
static void score_chunk_of_tile(tile_builder *tb, const shape *s, const tile_regs *scores, LLVMValueRef q_t,
                                LLVMValueRef k_packed, LLVMValueRef c0, int cn, LLVMValueRef s_t) {
  const int D = s->head_dim, BM = s->block_m, V = s->vectors, W = s->lanes;
  tile_regs_fill(tb, scores, tile_splat_f32(tb, 0.0f));
  int pairs = s->bf16_dot, width = pairs ? 2 : 1;  /* elements of d per step */
  tile_loop dl;
  LLVMValueRef j0 = tile_for(tb, &dl, tile_i64(tb, 0), tile_i64(tb, D / width), tile_i64(tb, s->unroll), "d");
  for (int u = 0; u < s->unroll; u++) {
    LLVMValueRef j = tile_add(tb, j0, tile_i64(tb, u));
    LLVMValueRef q_row_start = tile_mul(tb, j, tile_i64(tb, (int64_t)width * BM));
    LLVMValueRef q_row[MAX_VECTORS];
    for (int vi = 0; vi < V; vi++) {
      LLVMValueRef at = tile_add(tb, q_row_start, tile_i64(tb, (int64_t)width * vi * W));
      q_row[vi] = pairs ? tile_load_bits(tb, q_t, at, 2 * W) : tile_load_vector(tb, q_t, at, DTYPE_F32);
    }
    for (int n = 0; n < cn; n++) {
      LLVMValueRef key_row = tile_mul(tb, tile_add(tb, c0, tile_i64(tb, n)), tile_i64(tb, D));
      LLVMValueRef at = tile_add(tb, key_row, tile_mul(tb, j, tile_i64(tb, width)));
      LLVMValueRef kn = pairs ? tile_splat_pair(tb, k_packed, at) : tile_splat(tb, tile_load_f32(tb, k_packed, at));
      for (int vi = 0; vi < V; vi++) {
        LLVMValueRef sum = tile_regs_get(tb, scores, n, vi);
        tile_regs_set(tb, scores, n, vi, pairs ? tile_pair_dot(tb, sum, q_row[vi], kn) : tile_fma(tb, kn, q_row[vi], sum));
      }
    }
  }
  tile_end_for(tb, &dl);
  for (int n = 0; n < cn; n++) {
    LLVMValueRef row = tile_mul(tb, tile_add(tb, c0, tile_i64(tb, n)), tile_i64(tb, BM));
    for (int vi = 0; vi < V; vi++)
      tile_store_vector(tb, s_t, tile_add(tb, row, tile_i64(tb, (int64_t)vi * W)), tile_regs_get(tb, scores, n, vi));
  }
}

/* bf16_dot: V's packed bf16 rows [block_n][dp] as pairs of keys [block_n / 2][dp][2] (rows 2j and
 * 2j + 1 interleaved), so that the 2 x lanes elements at (j dp + d) 2 are one operand of a pair dot. */
static void interleave_key_pairs(tile_builder *tb, const shape *s, LLVMValueRef rows, LLVMValueRef pairs, int dp) {
  tile_loop jl;
  LLVMValueRef j = tile_for(tb, &jl, tile_i64(tb, 0), tile_i64(tb, s->block_n / 2), tile_i64(tb, 1), "pair");
  LLVMValueRef even_row = tile_mul(tb, j, tile_i64(tb, 2 * (int64_t)dp));  /* row 2j, and pair j's start */
  for (int d = 0; d < dp; d += s->lanes) {
    LLVMValueRef even = tile_load_bits(tb, rows, tile_add(tb, even_row, tile_i64(tb, d)), s->lanes);
    LLVMValueRef odd = tile_load_bits(tb, rows, tile_add(tb, even_row, tile_i64(tb, dp + d)), s->lanes);
    tile_store_bits(tb, pairs, tile_add(tb, even_row, tile_i64(tb, 2 * (int64_t)d)), tile_interleave(tb, even, odd));
  }
  tile_end_for(tb, &jl);
}

/* One register block of O = alpha O + P V: rows [m0, m0 + rows) of O (queries) by `vectors` vectors of
 * d from d0. The n loop runs over the tile's keys: one row of V (vectors loads), one broadcast of P per
 * query, rows * vectors independent FMAs; with bf16 pairs (P^T and V as interleave_key_pairs leaves
 * them) it runs over pairs of keys, one pair dot in place of two FMAs. */
static void pv_block(tile_builder *tb, LLVMValueRef o_acc, LLVMValueRef p_t, LLVMValueRef v_packed,
                     LLVMValueRef alpha_mem, LLVMValueRef m0, int rows, int d0, int vectors, int block_m, int block_n,
                     int row_floats, int pairs) {
  const int W = tb->lanes;
  tile_regs acc = tile_regs_new(tb, rows, vectors, "pv");
  LLVMValueRef o_at[MAX_PV_BLOCK];  /* where row m0 + r, vector j of the block is in O */
  for (int r = 0; r < rows; r++) {
    LLVMValueRef row = tile_add(tb, m0, tile_i64(tb, r));
    LLVMValueRef alpha = tile_splat(tb, tile_load_f32(tb, alpha_mem, row));
    for (int j = 0; j < vectors; j++) {
      o_at[r * vectors + j] = tile_add(tb, tile_mul(tb, row, tile_i64(tb, row_floats)), tile_i64(tb, d0 + j * W));
      tile_regs_set(tb, &acc, r, j, tile_vmul(tb, alpha, tile_load_vector(tb, o_acc, o_at[r * vectors + j], DTYPE_F32)));
    }
  }
  tile_loop nl;
  int steps = pairs ? block_n / 2 : block_n, width = pairs ? 2 : 1;  /* keys per step */
  LLVMValueRef n = tile_for(tb, &nl, tile_i64(tb, 0), tile_i64(tb, steps), tile_i64(tb, 1), "n");
  LLVMValueRef v_row = tile_mul(tb, n, tile_i64(tb, (int64_t)row_floats * width));
  LLVMValueRef p_row = tile_mul(tb, n, tile_i64(tb, (int64_t)block_m * width));
  LLVMValueRef v_vectors[MAX_PV_BLOCK];
  for (int j = 0; j < vectors; j++) {
    LLVMValueRef at = tile_add(tb, v_row, tile_i64(tb, (int64_t)(d0 + j * W) * width));
    v_vectors[j] = pairs ? tile_load_bits(tb, v_packed, at, 2 * W) : tile_load_vector(tb, v_packed, at, DTYPE_F32);
  }
  for (int r = 0; r < rows; r++) {
    LLVMValueRef at = tile_add(tb, p_row, tile_mul(tb, tile_add(tb, m0, tile_i64(tb, r)), tile_i64(tb, width)));
    LLVMValueRef p = pairs ? tile_splat_pair(tb, p_t, at) : tile_splat(tb, tile_load_f32(tb, p_t, at));
    for (int j = 0; j < vectors; j++) {
      LLVMValueRef sum = tile_regs_get(tb, &acc, r, j);
      tile_regs_set(tb, &acc, r, j, pairs ? tile_pair_dot(tb, sum, v_vectors[j], p) : tile_fma(tb, p, v_vectors[j], sum));
    }
  }
  tile_end_for(tb, &nl);
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < vectors; j++) tile_store_vector(tb, o_acc, o_at[r * vectors + j], tile_regs_get(tb, &acc, r, j));
}

/* Rows [m0, m0 + rows) of O = alpha O + P V, across V's head dim in blocks of pv_vectors vectors. */
static void pv_blocks_of_rows(tile_builder *tb, const shape *s, LLVMValueRef o_acc, LLVMValueRef p_t, LLVMValueRef v,
                              LLVMValueRef alpha_mem, LLVMValueRef m0, int rows) {
  const int W = s->lanes, DP = padded_head_dim(s->head_dim_v, W);
  for (int dv0 = 0; dv0 < DP / W; dv0 += s->pv_vectors) {
    int block_vectors = DP / W - dv0 < s->pv_vectors ? DP / W - dv0 : s->pv_vectors;
    pv_block(tb, o_acc, p_t, v, alpha_mem, m0, rows, dv0 * W, block_vectors, s->block_m, s->block_n, DP, s->bf16_dot);
  }
}

/* The first lane of the vector of rows vector_row0 .. vector_row0 + lanes - 1 whose position (row /
 * rows_per_position) is at least `position`, in [0, lanes]. */
static LLVMValueRef first_lane_at(tile_builder *tb, LLVMValueRef position, LLVMValueRef rows_per_position,
                                  LLVMValueRef vector_row0, int lanes) {
  LLVMValueRef lane = tile_sub(tb, tile_mul(tb, position, rows_per_position), vector_row0);
  return tile_min(tb, tile_max(tb, lane, tile_i64(tb, 0)), tile_i64(tb, lanes));
}

/* A ragged sequence's queries (key.varlen_q) or packed sequence's keys (key.varlen_k): rows [*start,
 * *start + *count) of q, o and lse (of k and v), from offsets[b] and [b + 1] (cu_seqlens_q or
 * cu_seqlens_k; validated on the host, clamped into [0, total] and to most rows anyway, so that no job
 * reads or writes outside the tensors). */
static void sequence_rows(tile_builder *tb, LLVMValueRef block, size_t offsets_at, size_t stride_at, size_t total_at,
                          LLVMValueRef b, LLVMValueRef most, LLVMValueRef *start, LLVMValueRef *count) {
  LLVMValueRef offsets = tile_load_param_ptr(tb, block, offsets_at);
  LLVMValueRef stride = tile_load_param_i64(tb, block, stride_at);
  LLVMValueRef total = tile_load_param_i64(tb, block, total_at);
  LLVMValueRef bound[2];
  for (int i = 0; i < 2; i++) {
    LLVMValueRef at = tile_mul(tb, tile_add(tb, b, tile_i64(tb, i)), stride);
    LLVMValueRef n = LLVMBuildLoad2(tb->b, tb->i32, LLVMBuildInBoundsGEP2(tb->b, tb->i32, offsets, &at, 1, ""), "");
    bound[i] = tile_min(tb, tile_max(tb, LLVMBuildSExt(tb->b, n, tb->i64, ""), tile_i64(tb, 0)), total);
  }
  *start = bound[0];
  *count = tile_min(tb, tile_max(tb, tile_sub(tb, bound[1], bound[0]), tile_i64(tb, 0)), most);
}

/* Head h's sink (key.sinks): one more term 2^sink2 of a row's sum, of a zero value (sink2 = sinks[h]
 * log2 e, in the base-2 units of the row's maximum). With top = max(max, sink2), O / l becomes
 * O 2^(max - top) / (l 2^(max - top) + 2^(sink2 - top)); top is finite (validation refuses other
 * sinks), so a row that saw no key (max -inf, l 0) gets 0 and the LSE sink2. A split job's first part
 * holds it (the runtime's combine then counts it once, as one more term of that part's sum). */
static void add_sink(tile_builder *tb, LLVMValueRef block, LLVMValueRef h, LLVMValueRef max, LLVMValueRef l,
                     LLVMValueRef *inverse, LLVMValueRef *lse2) {
  LLVMValueRef sinks = tile_load_param_ptr(tb, block, offsetof(cpu_attention_params, sinks));
  LLVMValueRef at = tile_mul(tb, h, tile_load_param_i64(tb, block, offsetof(cpu_attention_params, sinks_stride)));
  LLVMValueRef sink2 = LLVMBuildFMul(tb->b, tile_load_f32(tb, sinks, at), tile_f32(tb, 1.4426950408889634f), "sink2");
  /* one of the two exponents is 0: one exp2 of the other, -|max - sink2| */
  LLVMValueRef max_on_top = LLVMBuildFCmp(tb->b, LLVMRealOGE, max, sink2, "");
  LLVMValueRef top = LLVMBuildSelect(tb->b, max_on_top, max, sink2, "");
  LLVMValueRef below = tile_exp2_f32(tb, LLVMBuildFSub(tb->b, LLVMBuildSelect(tb->b, max_on_top, sink2, max, ""), top, ""));
  LLVMValueRef kept = LLVMBuildSelect(tb->b, max_on_top, tile_f32(tb, 1.0f), below, "");
  LLVMValueRef sink_term = LLVMBuildSelect(tb->b, max_on_top, below, tile_f32(tb, 1.0f), "");
  LLVMValueRef sum = LLVMBuildFAdd(tb->b, LLVMBuildFMul(tb->b, l, kept, ""), sink_term, "");
  *inverse = LLVMBuildFDiv(tb->b, kept, sum, "");
  *lse2 = LLVMBuildFAdd(tb->b, top, tile_log2(tb, sum), "");
}

static fj_status generate(LLVMModuleRef module, const attention_key *key, const jit_target *target,
                          const kernel_config *config, const char *function_name) {
  char why[256];
  if (!config_valid(key, target, config, why, sizeof why))
    return core_error(FJ_INVALID_ARGUMENT, "attention_fwd_cpu: invalid config: %s", why);
  shape s = {.block_m = config->values[P_BLOCK_M],
             .block_n = config->values[P_BLOCK_N],
             .unroll = steps_per_iteration(key, target, config),
             .lanes = config->values[P_VECTOR],
             .head_dim = key->head_dim,
             .head_dim_v = core_key_head_dim_v(key),
             .causal = key->causal,
             .window = key->window,
             .has_lse = key->has_lse,
             .d_contiguous = key->d_contiguous,
             .page_size = key->page_size,
             .varlen_q = key->varlen_q,
             .varlen_k = key->varlen_k,
             .alibi = key->alibi,
             .bias = key->bias != 0,
             .bias_dtype = core_key_bias_dtype(key),
             .dtype = (dtype_id)key->dtype,
             .kv_dtype = core_key_kv_dtype(key)};
  s.pv_rows = config->values[P_PV_ROWS];
  s.pv_vectors = config->values[P_PV_VECTORS];
  s.pack_gqa = config->values[P_PACK_GQA];
  s.bf16_dot = config->values[P_BF16_DOT];
  s.vectors = s.block_m / s.lanes;
  const int D = s.head_dim, DV = s.head_dim_v, BM = s.block_m, BN = s.block_n, V = s.vectors, W = s.lanes;
  const int DVP = padded_head_dim(DV, W);  /* V's and O's rows */

  tile_builder tbs, *tb = &tbs;
  LLVMValueRef fn = tile_function_begin(tb, module, target, function_name, W);
  LLVMValueRef block = LLVMGetParam(fn, 0), job = LLVMGetParam(fn, 1), scratch = LLVMGetParam(fn, 2);

  /* ---- parameters ---- */
#define P_OFF(field) offsetof(cpu_attention_params, field)
  tensor_ir q = load_tensor(tb, block, P_OFF(q), P_OFF(q_stride), s.d_contiguous);
  tensor_ir k = load_tensor(tb, block, P_OFF(k), P_OFF(k_stride), s.d_contiguous);
  tensor_ir v = load_tensor(tb, block, P_OFF(v), P_OFF(v_stride), s.d_contiguous);
  tensor_ir o = load_tensor(tb, block, P_OFF(o), P_OFF(o_stride), s.d_contiguous);
  LLVMValueRef seqlen_q = tile_load_param_i64(tb, block, P_OFF(seqlen_q));
  LLVMValueRef seqlen_kv = tile_load_param_i64(tb, block, P_OFF(seqlen_kv));
  LLVMValueRef heads = tile_load_param_i64(tb, block, P_OFF(heads));
  LLVMValueRef kv_heads = tile_load_param_i64(tb, block, P_OFF(kv_heads));
  LLVMValueRef q_tiles = tile_load_param_i64(tb, block, P_OFF(q_tiles));
  LLVMValueRef scale_log2 = tile_load_param_f32(tb, block, P_OFF(scale_log2));

  /* ---- which part of the keys (split-KV), which tile of rows of which (batch, head slot); see
   * job_count ---- */
  LLVMValueRef kv_splits = tile_load_param_i64(tb, block, P_OFF(kv_splits));
  LLVMValueRef kv_split_keys = tile_load_param_i64(tb, block, P_OFF(kv_split_keys));
  LLVMValueRef part = LLVMBuildSRem(tb->b, job, kv_splits, "part");
  job = LLVMBuildSDiv(tb->b, job, kv_splits, "");
  if (s.varlen_q) {  /* the launch's jobs: those of the grid that hold rows (job_map), or all of it */
    LLVMValueRef map = tile_load_param_ptr(tb, block, P_OFF(job_map));
    LLVMValueRef mapped = tile_var(tb, tb->i64, job, "job");
    tile_if given;
    tile_if_begin(tb, &given, LLVMBuildIsNotNull(tb->b, map, ""));
    tile_set(tb, mapped, LLVMBuildLoad2(tb->b, tb->i64, LLVMBuildInBoundsGEP2(tb->b, tb->i64, map, &job, 1, ""), ""));
    tile_if_end(tb, &given);
    job = tile_get(tb, mapped);
  }
  LLVMValueRef group = LLVMBuildSDiv(tb->b, heads, kv_heads, "group");
  LLVMValueRef rows_per_position = s.pack_gqa ? group : tile_i64(tb, 1);
  LLVMValueRef tile_index = LLVMBuildSRem(tb->b, job, q_tiles, "");
  LLVMValueRef batch_slot = LLVMBuildSDiv(tb->b, job, q_tiles, "");
  LLVMValueRef slots = s.pack_gqa ? kv_heads : heads;
  LLVMValueRef slot = LLVMBuildSRem(tb->b, batch_slot, slots, "");
  LLVMValueRef b = LLVMBuildSDiv(tb->b, batch_slot, slots, "");
  LLVMValueRef kv_h = s.pack_gqa ? slot : LLVMBuildSDiv(tb->b, slot, group, "");
  /* This sequence's keys: seqlens_kv[b] when given (validated into [0, seqlen_kv], clamped anyway so
   * that no read can leave k and v). */
  {
    LLVMValueRef lens = tile_load_param_ptr(tb, block, P_OFF(seqlens_kv));
    LLVMValueRef keys = tile_var(tb, tb->i64, seqlen_kv, "keys");
    tile_if given;
    tile_if_begin(tb, &given, LLVMBuildIsNotNull(tb->b, lens, ""));
    LLVMValueRef at = tile_mul(tb, b, tile_load_param_i64(tb, block, P_OFF(seqlens_kv_stride)));
    LLVMValueRef n = LLVMBuildLoad2(tb->b, tb->i32, LLVMBuildInBoundsGEP2(tb->b, tb->i32, lens, &at, 1, ""), "");
    n = LLVMBuildSExt(tb->b, n, tb->i64, "");
    tile_set(tb, keys, tile_min(tb, tile_max(tb, n, tile_i64(tb, 0)), seqlen_kv));
    tile_if_end(tb, &given);
    seqlen_kv = tile_get(tb, keys);
  }
  key_rows kr = {.page_size = s.page_size, .b = b, .start = NULL};
  if (s.varlen_k)  /* packed keys: this sequence's rows of k and v, and how many */
    sequence_rows(tb, block, P_OFF(cu_seqlens_k), P_OFF(cu_seqlens_k_stride), P_OFF(total_k), b, seqlen_kv, &kr.start,
                  &seqlen_kv);
  if (s.page_size > 0) {
    LLVMValueRef at = tile_mul(tb, b, tile_load_param_i64(tb, block, P_OFF(block_table_stride[0])));
    kr.table = LLVMBuildInBoundsGEP2(tb->b, tb->i32, tile_load_param_ptr(tb, block, P_OFF(block_table)), &at, 1, "");
    kr.table_stride = tile_load_param_i64(tb, block, P_OFF(block_table_stride[1]));
    kr.pages = tile_load_param_i64(tb, block, P_OFF(pages));
  }
  /* This sequence's queries: seqlen_q from row 0, or with ragged queries its own rows from q_start (the
   * split parts' rows keep max_queries positions per sequence). */
  LLVMValueRef max_queries = seqlen_q, q_start = tile_i64(tb, 0);
  if (s.varlen_q)
    sequence_rows(tb, block, P_OFF(cu_seqlens_q), P_OFF(cu_seqlens_q_stride), P_OFF(total_q), b, max_queries, &q_start,
                  &seqlen_q);
  LLVMValueRef first_head = tile_mul(tb, slot, rows_per_position);
  LLVMValueRef q0 = tile_mul(tb, tile_index, tile_i64(tb, BM));
  LLVMValueRef total_rows = tile_mul(tb, seqlen_q, rows_per_position);
  /* a job of the whole grid (no job map) whose tile lies past a shorter sequence's end: nothing to do */
  if (s.varlen_q) tile_return_unless(tb, tile_lt(tb, q0, total_rows));
  LLVMValueRef rows = tile_min(tb, tile_i64(tb, BM), tile_sub(tb, total_rows, q0));
  /* Bottom-right aligned: query i sees keys j <= i + last_diagonal when causal, and j >= i +
   * first_diagonal with a window. */
  LLVMValueRef diagonal = tile_sub(tb, seqlen_kv, seqlen_q);
  LLVMValueRef last_diagonal =
      s.causal ? tile_add(tb, diagonal, tile_load_param_i64(tb, block, P_OFF(window_right))) : NULL;
  LLVMValueRef first_diagonal =
      s.window ? tile_sub(tb, diagonal, tile_load_param_i64(tb, block, P_OFF(window_left))) : NULL;
  query_rows qr = {rows_per_position, first_head};

  /* ---- scratch ---- */
  scratch_layout layout = layout_scratch(D, DV, BM, BN, W);
  LLVMValueRef q_t = scratch_region(tb, scratch, layout.q_t);
  LLVMValueRef o_acc = scratch_region(tb, scratch, layout.o);
  LLVMValueRef k_packed = scratch_region(tb, scratch, layout.k);
  LLVMValueRef v_packed = scratch_region(tb, scratch, layout.v);
  /* bf16_dot: V's bf16 rows fill half of its region, their key pairs the other half */
  LLVMValueRef v_pairs = scratch_region(tb, scratch, layout.v + (size_t)BN * DVP / 2);
  LLVMValueRef p_t = scratch_region(tb, scratch, layout.p_t);
  LLVMValueRef s_t = scratch_region(tb, scratch, layout.s_t);
  LLVMValueRef alpha_mem = scratch_region(tb, scratch, layout.alpha);
  LLVMValueRef stats = scratch_region(tb, scratch, layout.stats);
  LLVMValueRef alibi_rows = scratch_region(tb, scratch, layout.alibi);
  LLVMValueRef bias_rows = scratch_region(tb, scratch, layout.bias);

  /* ---- Q^T, pre-scaled into base-2 logits (with bf16_dot: bf16 pairs of d per query, unscaled);
   * rows past seqlen_q are zeros ---- */
  {
    tile_loop ml;
    LLVMValueRef m = tile_for(tb, &ml, tile_i64(tb, 0), tile_i64(tb, BM), tile_i64(tb, 1), "m");
    LLVMValueRef inside = tile_lt(tb, m, rows);
    LLVMValueRef last_row = tile_sub(tb, total_rows, tile_i64(tb, 1));
    LLVMValueRef position, h;
    row_query(tb, &qr, tile_min(tb, tile_add(tb, q0, m), last_row), &position, &h);
    LLVMValueRef source = row_index(tb, &q, b, tile_add(tb, q_start, position), h);
    tile_loop dl;
    LLVMValueRef d = tile_for(tb, &dl, tile_i64(tb, 0), tile_i64(tb, D), tile_i64(tb, 1), "d");
    LLVMValueRef element = tile_add(tb, source, tile_mul(tb, d, q.stride[3]));
    if (s.bf16_dot) {  /* element d of row m at ((d / 2) BM + m) 2 + d % 2 */
      LLVMValueRef bits = LLVMBuildSelect(tb->b, inside, tile_load_bits(tb, q.base, element, 1), LLVMConstInt(tb->i16, 0, 0), "");
      LLVMValueRef odd = LLVMBuildAnd(tb->b, d, tile_i64(tb, 1), "");
      LLVMValueRef at = tile_add(tb, tile_mul(tb, tile_sub(tb, d, odd), tile_i64(tb, BM)),
                                 tile_add(tb, tile_mul(tb, m, tile_i64(tb, 2)), odd));
      tile_store_bits(tb, q_t, at, bits);
    } else {
      LLVMValueRef x = tile_load_element(tb, q.base, element, s.dtype);
      x = LLVMBuildSelect(tb->b, inside, LLVMBuildFMul(tb->b, x, scale_log2, ""), tile_f32(tb, 0.0f), "");
      tile_store_f32(tb, q_t, tile_add(tb, tile_mul(tb, d, tile_i64(tb, BM)), m), x);
    }
    tile_end_for(tb, &dl);
    tile_end_for(tb, &ml);
  }
  fill_zero(tb, o_acc, (int64_t)BM * DVP);

  /* The per-row tables below give a row past the sequence's end the last row's values (row 0 for none). */
  LLVMValueRef job_last_row = tile_max(tb, tile_sub(tb, total_rows, tile_i64(tb, 1)), tile_i64(tb, 0));

  /* ---- ALiBi: per row, its head's -slope log2 e (base-2 logits) and its diagonal key i + keys - queries
   * as floats, for the score pass to take a vector of each (rows past the sequence's end take its last
   * row's) ---- */
  if (s.alibi) {
    LLVMValueRef slopes = tile_load_param_ptr(tb, block, P_OFF(alibi));
    LLVMValueRef batch_at = tile_mul(tb, b, tile_load_param_i64(tb, block, P_OFF(alibi_stride[0])));
    LLVMValueRef head_stride = tile_load_param_i64(tb, block, P_OFF(alibi_stride[1]));
    tile_loop ml;
    LLVMValueRef m = tile_for(tb, &ml, tile_i64(tb, 0), tile_i64(tb, BM), tile_i64(tb, 1), "m");
    LLVMValueRef position, h;
    row_query(tb, &qr, tile_min(tb, tile_add(tb, q0, m), job_last_row), &position, &h);
    LLVMValueRef slope = tile_load_f32(tb, slopes, tile_add(tb, batch_at, tile_mul(tb, h, head_stride)));
    tile_store_f32(tb, alibi_rows, m, LLVMBuildFMul(tb->b, slope, tile_f32(tb, -1.4426950408889634f), ""));
    LLVMValueRef diagonal_key = LLVMBuildSIToFP(tb->b, tile_add(tb, position, diagonal), tb->f32, "");
    tile_store_f32(tb, alibi_rows, tile_add(tb, m, tile_i64(tb, BM)), diagonal_key);
    tile_end_for(tb, &ml);
  }

  /* ---- an additive bias: per row, where its elements start in attn_bias (its sequence, head and
   * position; rows past the sequence's end take its last row's), for the score pass to gather a vector
   * of each key's ---- */
  LLVMValueRef bias = NULL, bias_key_stride = NULL, bias_one_row = NULL;
  if (s.bias) {
    bias = tile_load_param_ptr(tb, block, P_OFF(attn_bias));
    bias_key_stride = tile_load_param_i64(tb, block, P_OFF(attn_bias_stride[3]));
    LLVMValueRef batch_at = tile_mul(tb, b, tile_load_param_i64(tb, block, P_OFF(attn_bias_stride[0])));
    LLVMValueRef head_stride = tile_load_param_i64(tb, block, P_OFF(attn_bias_stride[1]));
    LLVMValueRef query_stride = tile_load_param_i64(tb, block, P_OFF(attn_bias_stride[2]));
    /* A bias broadcast over the job's rows (a padding mask [batch, 1, 1, keys]: the rows' positions, and
     * with pack_gqa their heads, share one row of it) needs one element per key, not a gather. */
    bias_one_row = LLVMBuildICmp(tb->b, LLVMIntEQ, query_stride, tile_i64(tb, 0), "");
    if (s.pack_gqa)
      bias_one_row = LLVMBuildAnd(tb->b, bias_one_row, LLVMBuildICmp(tb->b, LLVMIntEQ, head_stride, tile_i64(tb, 0), ""), "");
    tile_loop ml;
    LLVMValueRef m = tile_for(tb, &ml, tile_i64(tb, 0), tile_i64(tb, BM), tile_i64(tb, 1), "m");
    LLVMValueRef position, h;
    row_query(tb, &qr, tile_min(tb, tile_add(tb, q0, m), job_last_row), &position, &h);
    LLVMValueRef first = tile_add(tb, batch_at, tile_add(tb, tile_mul(tb, h, head_stride), tile_mul(tb, position, query_stride)));
    LLVMBuildStore(tb->b, first, LLVMBuildInBoundsGEP2(tb->b, tb->i64, bias_rows, &m, 1, ""));
    tile_end_for(tb, &ml);
  }

  /* ---- running statistics per query: max m (base-2 logits) and sum l ---- */
  tile_regs row_max = tile_regs_new(tb, 1, V, "row_max");
  tile_regs row_sum = tile_regs_new(tb, 1, V, "row_sum");
  tile_regs_fill(tb, &row_max, tile_splat_f32(tb, -INFINITY));
  tile_regs_fill(tb, &row_sum, tile_splat_f32(tb, 0.0f));
  const int chunk = score_chunk(key, target, BM, BN, W);
  tile_regs scores = tile_regs_new(tb, chunk, V, "scores");  /* S^T of one chunk of the tile's keys */

  /* Keys this tile can see at all: causal tiles stop at the diagonal of their last query, windowed
   * ones start at the tile holding their first query's first key. */
  LLVMValueRef kv_end = seqlen_kv, kv_start = tile_i64(tb, 0);
  if (s.causal) {
    LLVMValueRef last_position = LLVMBuildSDiv(tb->b, tile_sub(tb, tile_add(tb, q0, rows), tile_i64(tb, 1)),
                                               rows_per_position, "");
    LLVMValueRef end = tile_add(tb, tile_add(tb, last_position, tile_i64(tb, 1)), last_diagonal);
    kv_end = tile_max(tb, tile_i64(tb, 0), tile_min(tb, seqlen_kv, end));
  }
  if (s.window) {
    LLVMValueRef first_position = LLVMBuildSDiv(tb->b, q0, rows_per_position, "");
    LLVMValueRef start = tile_max(tb, tile_i64(tb, 0), tile_add(tb, first_position, first_diagonal));
    kv_start = tile_mul(tb, LLVMBuildSDiv(tb->b, start, tile_i64(tb, BN), ""), tile_i64(tb, BN));
  }

  tile_loop kv_loop;
  /* Split-KV: this job's part of those keys, counted from its first tile (kv_split_keys is a multiple
   * of BN, so no tile crosses into the next part). */
  LLVMValueRef kv_begin = tile_add(tb, kv_start, tile_mul(tb, part, kv_split_keys));
  LLVMValueRef kv_stop = tile_min(tb, kv_end, tile_add(tb, kv_begin, kv_split_keys));
  LLVMValueRef n0 = tile_for(tb, &kv_loop, kv_begin, kv_stop, tile_i64(tb, BN), "n0");
  tile_pages pages;
  int by_tile = s.page_size >= s.block_n;  /* pages of at least a tile: placed per tile */
  if (by_tile) pages = tile_pages_of(tb, &kr, n0, seqlen_kv);
  pack_kv_tile(tb, &s, &k, D, &kr, by_tile ? &pages : NULL, n0, kv_h, seqlen_kv, k_packed, D);
  pack_kv_tile(tb, &s, &v, DV, &kr, by_tile ? &pages : NULL, n0, kv_h, seqlen_kv, v_packed, DVP);
  if (s.bf16_dot) interleave_key_pairs(tb, &s, v_packed, v_pairs, DVP);

  /* S^T, chunk by chunk (what the registers hold), into scratch: s_t [block_n][block_m]. */
  {
    tile_loop cl;
    LLVMValueRef c0 = tile_for(tb, &cl, tile_i64(tb, 0), tile_i64(tb, BN), tile_i64(tb, chunk), "chunk");
    score_chunk_of_tile(tb, &s, &scores, q_t, k_packed, c0, chunk, s_t);
    cl.rolled = 1;
    tile_end_for(tb, &cl);
  }

  /* Each key's scores as base-2 logits (with bf16_dot the scale Q^T was not given), soft-capped
   * (key.softcap: s becomes softcap_out tanh(softcap_in s)), then masked: keys past the end and, when
   * causal, past each query's diagonal. Row q0 + vi*W + lane is at position (q0 + vi*W + lane) /
   * rows_per_position and sees key n0 + n when that position is at least n0 + n - last_diagonal, that is
   * when lane >= (n0 + n - last_diagonal) * rows_per_position - q0 - vi*W; with a window also when the
   * position is at most n0 + n - first_diagonal, that is when lane < (n0 + n - first_diagonal + 1) *
   * rows_per_position - q0 - vi*W; a key past seqlen_kv is seen by no lane. Each query's maximum over
   * the tile comes out too. */
  LLVMValueRef lane_numbers[MAX_LANES];
  for (int i = 0; i < W; i++) lane_numbers[i] = LLVMConstInt(tb->i32, (unsigned long long)i, 0);
  LLVMValueRef lanes = LLVMConstVector(lane_numbers, (unsigned)W);
  LLVMValueRef tile_max_var[MAX_VECTORS];
  for (int vi = 0; vi < V; vi++) tile_max_var[vi] = tile_var(tb, tb->vec, tile_splat_f32(tb, -INFINITY), "tile_max");
  {
    tile_loop nl;
    LLVMValueRef n = tile_for(tb, &nl, tile_i64(tb, 0), tile_i64(tb, BN), tile_i64(tb, 1), "key");
    LLVMValueRef key_index = tile_add(tb, n0, n);
    LLVMValueRef key_present = tile_lt(tb, key_index, seqlen_kv);
    for (int vi = 0; vi < V; vi++) {
      LLVMValueRef at = tile_add(tb, tile_mul(tb, n, tile_i64(tb, BM)), tile_i64(tb, (int64_t)vi * W));
      LLVMValueRef score = tile_load_vector(tb, s_t, at, DTYPE_F32);
      if (s.bf16_dot) score = tile_vmul(tb, tile_splat(tb, scale_log2), score);
      if (key->softcap) {
        LLVMValueRef in = tile_splat(tb, tile_load_param_f32(tb, block, P_OFF(softcap_in)));
        LLVMValueRef out = tile_splat(tb, tile_load_param_f32(tb, block, P_OFF(softcap_out)));
        score = tile_vmul(tb, out, tile_tanh(tb, tile_vmul(tb, in, score)));
      }
      if (s.alibi) {  /* -slope |diagonal key - key| */
        LLVMValueRef slope = tile_load_vector(tb, alibi_rows, tile_i64(tb, (int64_t)vi * W), DTYPE_F32);
        LLVMValueRef diagonal_key = tile_load_vector(tb, alibi_rows, tile_i64(tb, (int64_t)BM + vi * W), DTYPE_F32);
        LLVMValueRef distance = tile_vsub(tb, diagonal_key, tile_splat(tb, LLVMBuildSIToFP(tb->b, key_index, tb->f32, "")));
        distance = tile_vmax(tb, distance, LLVMBuildFNeg(tb->b, distance, ""));
        score = tile_fma(tb, slope, distance, score);
      }
      if (s.bias) {  /* + bias log2 e: each lane's row's element of this key (the last key's past the end) */
        LLVMValueRef column = tile_mul(tb, tile_min(tb, key_index, tile_sub(tb, seqlen_kv, tile_i64(tb, 1))), bias_key_stride);
        LLVMValueRef row = tile_i64(tb, (int64_t)vi * W);
        LLVMValueRef row_offsets = LLVMBuildInBoundsGEP2(tb->b, tb->i64, bias_rows, &row, 1, "");
        LLVMValueRef values = tile_var(tb, tb->vec, NULL, "bias");  /* set by one of the two branches */
        tile_if one_row, each_row;
        tile_if_begin(tb, &one_row, bias_one_row);
        LLVMValueRef first = LLVMBuildLoad2(tb->b, tb->i64, row_offsets, "");
        tile_set(tb, values, tile_splat(tb, tile_load_element(tb, bias, tile_add(tb, first, column), s.bias_dtype)));
        tile_if_end(tb, &one_row);
        tile_if_begin(tb, &each_row, LLVMBuildNot(tb->b, bias_one_row, ""));
        LLVMValueRef offsets = LLVMBuildLoad2(tb->b, LLVMVectorType(tb->i64, (unsigned)W), row_offsets, "");
        LLVMSetAlignment(offsets, 8);
        tile_set(tb, values, tile_gather(tb, bias, offsets, column, s.bias_dtype));
        tile_if_end(tb, &each_row);
        score = tile_fma(tb, tile_splat_f32(tb, 1.4426950408889634f), tile_get(tb, values), score);
      }
      LLVMValueRef vector_row0 = tile_add(tb, q0, tile_i64(tb, (int64_t)vi * W));
      LLVMValueRef first_lane = tile_i64(tb, 0);
      if (s.causal)
        first_lane = first_lane_at(tb, tile_sub(tb, key_index, last_diagonal), rows_per_position, vector_row0, W);
      first_lane = LLVMBuildSelect(tb->b, key_present, first_lane, tile_i64(tb, W), "");
      LLVMValueRef threshold = tile_splat(tb, LLVMBuildTrunc(tb->b, first_lane, tb->i32, ""));
      LLVMValueRef visible = LLVMBuildICmp(tb->b, LLVMIntSGE, lanes, threshold, "");
      if (s.window) {
        LLVMValueRef past = tile_add(tb, tile_sub(tb, key_index, first_diagonal), tile_i64(tb, 1));
        LLVMValueRef end_lane = first_lane_at(tb, past, rows_per_position, vector_row0, W);
        LLVMValueRef end = tile_splat(tb, LLVMBuildTrunc(tb->b, end_lane, tb->i32, ""));
        visible = LLVMBuildAnd(tb->b, visible, LLVMBuildICmp(tb->b, LLVMIntSLT, lanes, end, ""), "");
      }
      score = LLVMBuildSelect(tb->b, visible, score, tile_splat_f32(tb, -INFINITY), "");
      tile_store_vector(tb, s_t, at, score);
      tile_set(tb, tile_max_var[vi], tile_vmax(tb, tile_get(tb, tile_max_var[vi]), score));
    }
    nl.rolled = 1;
    tile_end_for(tb, &nl);
  }

  /* Online softmax, lane-wise per query: new maximum, the factor that rescales what came before, and
   * P = 2^(S - max), kept as P^T in scratch for the P.V microkernel (with bf16_dot as bf16 pairs of
   * keys per query, [block_n / 2][block_m][2]; the sum keeps fp32 P). */
  LLVMValueRef base[MAX_VECTORS], sum_var[MAX_VECTORS];
  for (int vi = 0; vi < V; vi++) {
    LLVMValueRef old_max = tile_regs_get(tb, &row_max, 0, vi);
    LLVMValueRef new_max = tile_vmax(tb, old_max, tile_get(tb, tile_max_var[vi]));
    /* A query that has seen no key yet keeps -inf; subtracting 0 then keeps every P exactly 0. */
    LLVMValueRef none_seen = LLVMBuildFCmp(tb->b, LLVMRealOEQ, new_max, tile_splat_f32(tb, -INFINITY), "");
    base[vi] = LLVMBuildSelect(tb->b, none_seen, tile_splat_f32(tb, 0.0f), new_max, "");
    LLVMValueRef alpha = tile_exp2(tb, tile_vsub(tb, old_max, base[vi]));
    tile_store_vector(tb, alpha_mem, tile_i64(tb, vi * W), alpha);
    tile_regs_set(tb, &row_sum, 0, vi, tile_vmul(tb, tile_regs_get(tb, &row_sum, 0, vi), alpha));
    tile_regs_set(tb, &row_max, 0, vi, new_max);
    sum_var[vi] = tile_var(tb, tb->vec, tile_splat_f32(tb, 0.0f), "tile_sum");
  }
  {
    int step = s.bf16_dot ? 2 : 1;  /* keys per P store */
    tile_loop nl;
    LLVMValueRef n = tile_for(tb, &nl, tile_i64(tb, 0), tile_i64(tb, BN), tile_i64(tb, step), "key");
    for (int vi = 0; vi < V; vi++) {
      LLVMValueRef p[2];
      for (int e = 0; e < step; e++) {
        LLVMValueRef at = tile_add(tb, tile_mul(tb, tile_add(tb, n, tile_i64(tb, e)), tile_i64(tb, BM)), tile_i64(tb, (int64_t)vi * W));
        p[e] = tile_exp2(tb, tile_vsub(tb, tile_load_vector(tb, s_t, at, DTYPE_F32), base[vi]));
        tile_set(tb, sum_var[vi], tile_vadd(tb, tile_get(tb, sum_var[vi]), p[e]));
        if (!s.bf16_dot) tile_store_vector(tb, p_t, at, p[e]);
      }
      if (s.bf16_dot)  /* pair n / 2 at ((n / 2) BM + vi W) 2 = n BM + 2 vi W */
        tile_store_bits(tb, p_t, tile_add(tb, tile_mul(tb, n, tile_i64(tb, BM)), tile_i64(tb, (int64_t)2 * vi * W)),
                        tile_bf16_pairs(tb, p[0], p[1]));
    }
    nl.rolled = 1;
    tile_end_for(tb, &nl);
  }
  for (int vi = 0; vi < V; vi++)
    tile_regs_set(tb, &row_sum, 0, vi, tile_vadd(tb, tile_regs_get(tb, &row_sum, 0, vi), tile_get(tb, sum_var[vi])));

  /* O = alpha O + P V, a register block of pv_rows queries x pv_vectors vectors of d at a time: each
   * row of V is loaded once per block and each P element broadcast once, into independent sums. The
   * blocks of whole pv_rows run in a loop, then the rest; rows past the tile's last query are never
   * stored, so a decode step's few queries skip theirs. */
  {
    int whole = BM - BM % s.pv_rows, rest = BM % s.pv_rows;
    tile_loop ml;
    LLVMValueRef m0 = tile_for(tb, &ml, tile_i64(tb, 0), tile_min(tb, rows, tile_i64(tb, whole)), tile_i64(tb, s.pv_rows), "rows");
    pv_blocks_of_rows(tb, &s, o_acc, p_t, s.bf16_dot ? v_pairs : v_packed, alpha_mem, m0, s.pv_rows);
    ml.rolled = 1;
    tile_end_for(tb, &ml);
    if (rest > 0) {
      tile_if has_rows;
      tile_if_begin(tb, &has_rows, tile_lt(tb, tile_i64(tb, whole), rows));
      pv_blocks_of_rows(tb, &s, o_acc, p_t, s.bf16_dot ? v_pairs : v_packed, alpha_mem, tile_i64(tb, whole), rest);
      tile_if_end(tb, &has_rows);
    }
  }
  tile_end_for(tb, &kv_loop);

  /* ---- epilogue: O / l, converted to the dtype; LSE = (m + log2 l) ln 2 (with a sink's term) ---- */
  LLVMValueRef o_partial = tile_load_param_ptr(tb, block, P_OFF(o_partial));
  LLVMValueRef lse_partial = tile_load_param_ptr(tb, block, P_OFF(lse_partial));
  LLVMValueRef is_part = LLVMBuildIsNotNull(tb->b, o_partial, "is_part");
  for (int vi = 0; vi < V; vi++) {
    tile_store_vector(tb, stats, tile_i64(tb, vi * W), tile_regs_get(tb, &row_sum, 0, vi));
    tile_store_vector(tb, stats, tile_i64(tb, BM + vi * W), tile_regs_get(tb, &row_max, 0, vi));
  }
  {
    tile_loop ml;
    LLVMValueRef m = tile_for(tb, &ml, tile_i64(tb, 0), rows, tile_i64(tb, 1), "m");
    LLVMValueRef l = tile_load_f32(tb, stats, m);
    LLVMValueRef seen = LLVMBuildFCmp(tb->b, LLVMRealOGT, l, tile_f32(tb, 0.0f), "");
    /* an fp8 cache's values are v / v_scale: o = v_scale sum p v / l */
    LLVMValueRef numerator = key->kv_fp8 ? tile_load_param_f32(tb, block, P_OFF(v_scale)) : tile_f32(tb, 1.0f);
    LLVMValueRef inverse = LLVMBuildSelect(tb->b, seen, LLVMBuildFDiv(tb->b, numerator, l, ""), tile_f32(tb, 0.0f), "");
    LLVMValueRef query, h;
    row_query(tb, &qr, tile_add(tb, q0, m), &query, &h);
    LLVMValueRef source = tile_mul(tb, m, tile_i64(tb, DVP));
    LLVMValueRef max = tile_load_f32(tb, stats, tile_add(tb, m, tile_i64(tb, BM)));
    LLVMValueRef safe_l = LLVMBuildSelect(tb->b, seen, l, tile_f32(tb, 1.0f), "");
    LLVMValueRef lse2 = LLVMBuildSelect(tb->b, seen, LLVMBuildFAdd(tb->b, max, tile_log2(tb, safe_l), ""),
                                        tile_f32(tb, -INFINITY), "");
    if (key->sinks) {  /* the whole row, or the first part of a split one: the combine counts it once */
      LLVMValueRef with_inverse, with_lse2;
      add_sink(tb, block, h, max, l, &with_inverse, &with_lse2);
      LLVMValueRef first_part = LLVMBuildICmp(tb->b, LLVMIntEQ, part, tile_i64(tb, 0), "");
      if (key->kv_fp8) with_inverse = LLVMBuildFMul(tb->b, with_inverse, numerator, "");
      inverse = LLVMBuildSelect(tb->b, first_part, with_inverse, inverse, "");
      lse2 = LLVMBuildSelect(tb->b, first_part, with_lse2, lse2, "");
    }
    /* A split-KV part leaves fp32 O / l and its base-2 LSE at row ((part * batch + b) * heads + h) *
     * seqlen_q + query of the workspace (cpu_attention_params), for the runtime to combine. */
    tile_if to_parts;
    tile_if_begin(tb, &to_parts, is_part);
    {
      LLVMValueRef rows_all = tile_mul(tb, tile_mul(tb, tile_load_param_i64(tb, block, P_OFF(batch)), heads), max_queries);
      LLVMValueRef at = tile_add(tb, tile_mul(tb, part, rows_all),
                                 tile_add(tb, tile_mul(tb, tile_add(tb, tile_mul(tb, b, heads), h), max_queries), query));
      tile_store_f32(tb, lse_partial, at, lse2);
      LLVMValueRef first = tile_mul(tb, at, tile_i64(tb, DV));
      tile_loop pl;
      LLVMValueRef d = tile_for(tb, &pl, tile_i64(tb, 0), tile_i64(tb, DV), tile_i64(tb, 1), "d");
      LLVMValueRef x = tile_load_f32(tb, o_acc, tile_add(tb, source, d));
      tile_store_f32(tb, o_partial, tile_add(tb, first, d), LLVMBuildFMul(tb->b, x, inverse, ""));
      tile_end_for(tb, &pl);
    }
    tile_if_end(tb, &to_parts);
    tile_if whole;
    tile_if_begin(tb, &whole, LLVMBuildNot(tb->b, is_part, ""));
    LLVMValueRef destination = row_index(tb, &o, b, tile_add(tb, q_start, query), h);
    tile_loop dl;
    LLVMValueRef d = tile_for(tb, &dl, tile_i64(tb, 0), tile_i64(tb, DV), tile_i64(tb, 1), "d");
    LLVMValueRef x = tile_load_f32(tb, o_acc, tile_add(tb, source, d));
    tile_store_element(tb, o.base, tile_add(tb, destination, tile_mul(tb, d, o.stride[3])), s.dtype,
                       LLVMBuildFMul(tb->b, x, inverse, ""));
    tile_end_for(tb, &dl);
    if (s.has_lse) {
      LLVMValueRef lse = tile_load_param_ptr(tb, block, P_OFF(lse));
      LLVMValueRef lse_index = tile_mul(tb, b, tile_load_param_i64(tb, block, P_OFF(lse_stride[0])));
      lse_index = tile_add(tb, lse_index, tile_mul(tb, h, tile_load_param_i64(tb, block, P_OFF(lse_stride[1]))));
      lse_index = tile_add(tb, lse_index,
                           tile_mul(tb, tile_add(tb, q_start, query), tile_load_param_i64(tb, block, P_OFF(lse_stride[2]))));
      /* -inf stays -inf: a row that saw nothing */
      tile_store_f32(tb, lse, lse_index, LLVMBuildFMul(tb->b, lse2, tile_f32(tb, 0.69314718055994531f), ""));
    }
    tile_if_end(tb, &whole);
    tile_end_for(tb, &ml);
  }

  tile_function_end(tb);
#undef P_OFF
  return FJ_OK;
}

const kernel_family attention_fwd_cpu_family = {
    .name = "attention_fwd_cpu",
    .backend = "cpu",
    .generator_version = GENERATOR_VERSION,
    .params_bytes = sizeof(cpu_attention_params),
    .num_params = P_COUNT,
    .params = params,
    .config_valid = config_valid,
    .same_kernel_as = same_kernel_as,
    .default_config = default_config,
    .generate = generate,
    .codegen_key = codegen_key,
    .job_count = job_count,
    .scratch_bytes = scratch_bytes,
};
