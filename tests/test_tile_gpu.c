/* test_tile_gpu.c: the GPU tile layer's layout rules checked on the CPU. The mma.m16n8k16 fragment
 * maps are bijections onto their matrices; an ldmatrix.x4 simulated from the PTX ISA's description
 * (lane 8*i + r gives the address of row r of matrix i; lane l receives row l/4, columns 2(l%4)+{0,1}
 * of each matrix, or the transpose) over a swizzled shared tile delivers exactly the A fragment, the
 * B fragment of an n-major K tile and the B fragment of a k-major V tile; an accumulator regrouped as
 * an A fragment (P in P V) keeps every element in place; and the swizzle is a bijection on every row
 * whose ldmatrix phases touch 8 different 16-byte bank groups; the xor form of the swizzle that
 * ldmatrix addresses use for rows of whole groups of 8 chunks agrees with the rule; and the block
 * index's dividers (gpu_divider, the host half of tile_gpu_divide) divide exactly. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels/attention_fwd_gpu_abi.h"
#include "tile/tile_gpu.h"

static int passed, failed;

static void check(int ok, const char *what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    printf("FAIL: %s\n", what);
  }
}

static void test_fragment_bijections(void) {
  int seen_c[16][8] = {{0}}, seen_a[16][16] = {{0}}, seen_b[16][8] = {{0}}, ok = 1;
  for (int lane = 0; lane < 32; lane++) {
    for (int reg = 0; reg < 4; reg++) {
      int row, col;
      tile_gpu_acc_coord(lane, reg, &row, &col);
      if (row < 0 || row >= 16 || col < 0 || col >= 8) ok = 0; else seen_c[row][col]++;
      for (int half = 0; half < 2; half++) {
        int k;
        tile_gpu_a_coord(lane, reg, half, &row, &k);
        if (row < 0 || row >= 16 || k < 0 || k >= 16) ok = 0; else seen_a[row][k]++;
        if (reg < 2) {
          int n;
          tile_gpu_b_coord(lane, reg, half, &k, &n);
          if (k < 0 || k >= 16 || n < 0 || n >= 8) ok = 0; else seen_b[k][n]++;
        }
      }
    }
  }
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) {
      if (c < 8 && (seen_c[r][c] != 1 || seen_b[r][c] != 1)) ok = 0;
      if (seen_a[r][c] != 1) ok = 0;
    }
  check(ok, "accumulator, A and B fragment maps cover their matrices exactly once");
  /* Two spot checks straight from the PTX ISA figures: lane 5 (group 1, thread 1) holds C rows 1
   * and 9, columns 2 and 3; its a2 register holds row 1, columns 10 and 11. */
  int row, col;
  tile_gpu_acc_coord(5, 3, &row, &col);
  check(row == 9 && col == 3, "c3 of lane 5 is (9, 3)");
  tile_gpu_a_coord(5, 2, 1, &row, &col);
  check(row == 1 && col == 11, "a2.hi of lane 5 is (1, 11)");
  tile_gpu_b_coord(5, 1, 0, &row, &col);
  check(row == 10 && col == 1, "b1.lo of lane 5 is (k 10, n 1)");
}

/* A shared tile of rows x (cpr chunks of 8 elements), stored swizzled. */
#define ROWS 48
#define MAX_CPR 32
static int tile_data[ROWS * MAX_CPR * 8];

static void tile_store(int cpr, int swizzle, int row, int col, int value) {
  int physical = tile_gpu_swizzle_chunk(row, col / 8, cpr, swizzle);
  tile_data[(row * cpr + physical) * 8 + col % 8] = value;
}

/* The 16 bytes (8 elements) a lane's ldmatrix address points at: logical row and chunk. */
static const int *tile_chunk(int cpr, int swizzle, int row, int chunk) {
  return &tile_data[(row * cpr + tile_gpu_swizzle_chunk(row, chunk, cpr, swizzle)) * 8];
}

/* Element (lane, register, half) of an ldmatrix.x4 whose lanes address the 16 x 16 block at (row0,
 * chunk0) with pattern `kind`. */
static int ldmatrix(int cpr, int swizzle, int row0, int chunk0, int kind, int transpose, int lane, int reg,
                    int half) {
  int row, col;
  tile_gpu_ldmatrix_element(lane, half, transpose, &row, &col);
  /* Row `row` of matrix `reg` is the one lane 8 * reg + row addressed. */
  int provider = 8 * reg + row, matrix, provided_row, r, c;
  tile_gpu_ldmatrix_provider(provider, &matrix, &provided_row);
  if (matrix != reg || provided_row != row) return -1;
  tile_gpu_ldmatrix_source(provider, kind, &r, &c);
  return tile_chunk(cpr, swizzle, row0 + r, chunk0 + c)[col];
}

static void test_ldmatrix_operands(int cpr, int swizzle) {
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < cpr * 8; c++) tile_store(cpr, swizzle, r, c, r * 1000 + c);
  int row0 = 16, chunk0 = cpr >= 4 ? 2 : 0;
  int a_ok = 1, k_ok = 1, v_ok = 1;
  for (int lane = 0; lane < 32; lane++)
    for (int reg = 0; reg < 4; reg++)
      for (int half = 0; half < 2; half++) {
        /* A (Q rows row0.., k from chunk0): register reg is a_reg. */
        int row, k, n;
        tile_gpu_a_coord(lane, reg, half, &row, &k);
        int want = (row0 + row) * 1000 + chunk0 * 8 + k;
        if (ldmatrix(cpr, swizzle, row0, chunk0, TILE_GPU_LD_A, 0, lane, reg, half) != want) a_ok = 0;
        /* K stored [n][k]: registers are b0, b1 of n-tile 0, then of n-tile 1. */
        tile_gpu_b_coord(lane, reg & 1, half, &k, &n);
        int n_tile = reg >> 1;
        want = (row0 + 8 * n_tile + n) * 1000 + chunk0 * 8 + k;
        if (ldmatrix(cpr, swizzle, row0, chunk0, TILE_GPU_LD_B, 0, lane, reg, half) != want) k_ok = 0;
        /* V stored [k][n], read transposed: the same registers. */
        want = (row0 + k) * 1000 + chunk0 * 8 + 8 * n_tile + n;
        if (ldmatrix(cpr, swizzle, row0, chunk0, TILE_GPU_LD_A, 1, lane, reg, half) != want) v_ok = 0;
      }
  char what[128];
  snprintf(what, sizeof what, "ldmatrix gives the A fragment (chunks/row %d, swizzle %d)", cpr, swizzle);
  check(a_ok, what);
  snprintf(what, sizeof what, "ldmatrix gives the B fragment of n-major K (chunks/row %d, swizzle %d)", cpr, swizzle);
  check(k_ok, what);
  snprintf(what, sizeof what, "ldmatrix.trans gives the B fragment of k-major V (chunks/row %d, swizzle %d)", cpr,
           swizzle);
  check(v_ok, what);
}

/* P in P V: A register r of k-step s is accumulator registers 2(r&1), 2(r&1)+1 of n-tile 2s + (r>>1). */
static void test_accumulator_as_a(void) {
  int ok = 1;
  for (int lane = 0; lane < 32; lane++)
    for (int r = 0; r < 4; r++)
      for (int half = 0; half < 2; half++) {
        int a_row, a_k, c_row, c_col;
        tile_gpu_a_coord(lane, r, half, &a_row, &a_k);
        tile_gpu_acc_coord(lane, 2 * (r & 1) + half, &c_row, &c_col);
        if (a_row != c_row || a_k != 8 * (r >> 1) + c_col) ok = 0;
      }
  check(ok, "an accumulator regrouped as A fragments keeps each element's row and column");
}

static void test_swizzle(void) {
  for (int cpr = 2; cpr <= MAX_CPR; cpr += 2) {
    int bijective = 1, conflict_free = 1;
    for (int row = 0; row < 64; row++) {
      int seen[MAX_CPR] = {0};
      for (int c = 0; c < cpr; c++) {
        int p = tile_gpu_swizzle_chunk(row, c, cpr, 1);
        if (p < 0 || p >= cpr || seen[p]++) bijective = 0;
      }
    }
    for (int row0 = 0; row0 < 64; row0 += 8)
      for (int c = 0; c < cpr; c++) {
        int groups[8] = {0};
        for (int r = row0; r < row0 + 8; r++) groups[(r * cpr + tile_gpu_swizzle_chunk(r, c, cpr, 1)) % 8]++;
        for (int g = 0; g < 8; g++)
          if (groups[g] > 1) conflict_free = 0;
      }
    char what[128];
    snprintf(what, sizeof what, "swizzle with %d chunks per row is a bijection on every row", cpr);
    check(bijective, what);
    snprintf(what, sizeof what, "swizzle with %d chunks per row: 8 rows of one ldmatrix phase hit 8 bank groups", cpr);
    check(conflict_free, what);
    check(tile_gpu_swizzle_chunk(5, cpr - 1, cpr, 0) == cpr - 1, "swizzle off is the identity");
  }
}

/* ldmatrix_block's shortcut: for a row r = 8i + (lane % 8) and a chunk ld_chunk + c (ld_chunk 0 or 1,
 * c even) in the swizzle group starting at base, the swizzled chunk is base + ((ld_chunk ^ mask) ^
 * (c - base)), mask = swizzle(r, base) - base; and the tail chunks past the groups stay put. */
static void test_swizzle_xor_form(void) {
  int ok = 1;
  for (int cpr = 2; cpr <= 32; cpr += 2)
    for (int r = 0; r < 64; r++)
      for (int ld_chunk = 0; ld_chunk < 2; ld_chunk++)
        for (int c = 0; c + 1 < cpr; c += 2) {
          int base = tile_gpu_swizzle_group(c, cpr);
          int mask = tile_gpu_swizzle_chunk(r, base, cpr, 1) - base;
          int rule = tile_gpu_swizzle_chunk(r, ld_chunk + c, cpr, 1);
          if (rule != base + ((ld_chunk ^ mask) ^ (c - base)) || tile_gpu_swizzle_group(c + 1, cpr) != base) ok = 0;
        }
  check(ok, "the xor form of ldmatrix addresses matches the swizzle rule (2 to 32 chunks per row)");
}

static void test_dividers(void) {
  uint32_t divisors[] = {1, 2, 3, 5, 7, 8, 12, 16, 31, 32, 33, 100, 127, 128, 641, 1000, 4096, 65535, 65536,
                         1u << 20, (1u << 20) + 1, 2147483647u, 1u << 30, (1u << 30) + 3, 1431655765u};
  int ok = 1;
  char what[160] = "";
  uint64_t state = 88172645463325252ull;
  for (size_t i = 0; i < sizeof divisors / sizeof divisors[0] && ok; i++) {
    uint32_t d = divisors[i];
    gpu_divider divider = gpu_divider_for(d);
    for (int k = 0; k < 200000 && ok; k++) {
      uint32_t n;
      if (k < 4096) {
        n = (uint32_t)k;  /* small numerators, every one */
      } else if (k < 8192) {
        n = 2147483647u - (uint32_t)(k - 4096);  /* the top of the range */
      } else if (k < 12288) {
        uint64_t m = (uint64_t)d * (uint64_t)(k - 8192) + (k % 3) - 1;  /* around multiples of d */
        n = m > 2147483647u ? 2147483647u : (uint32_t)m;
      } else {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        n = (uint32_t)(state & 0x7fffffffu);
      }
      if (gpu_divider_apply(divider, n) != n / d) {
        ok = 0;
        snprintf(what, sizeof what, "%u / %u gives %u (magic %u, shift %u)", n, d, gpu_divider_apply(divider, n),
                 divider.magic, divider.shift);
      }
    }
  }
  check(ok, ok ? "gpu_divider divides n < 2^31 exactly by 25 divisors from 1 to 2^31 - 1" : what);
}

int main(void) {
  test_fragment_bijections();
  test_swizzle_xor_form();
  test_dividers();
  test_accumulator_as_a();
  int cprs[] = {2, 4, 8, 10, 12, 16, 32};
  for (size_t i = 0; i < sizeof cprs / sizeof cprs[0]; i++)
    for (int swizzle = 0; swizzle < 2; swizzle++) test_ldmatrix_operands(cprs[i], swizzle);
  test_swizzle();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
