/* nvptx_emu_warp.c: the warp-wide instructions of the NVPTX kernels as plain C over a whole warp, each
 * layout transcribed from the PTX ISA (see nvptx_emu_warp.h): who holds which matrix element is
 * computed here from the ISA's own formulas (groupID = laneid >> 2, threadID_in_group = laneid % 4),
 * so a wrong layout in src/tile/ shows as a wrong result instead of agreeing with itself. */
#include "nvptx_emu_warp.h"

#include <string.h>

#include "core/dtype.h"

static float emu_operand(int bf16, uint16_t bits) {
  /* Both conversions are exact: every f16 and bf16 value is an fp32 value. */
  return bf16 ? core_bf16_to_f32(bits) : core_f16_to_f32(bits);
}

/* Element i (0..7, low to high) of a lane's A fragment: register i / 2, half i % 2. */
static uint16_t emu_element(const uint32_t *registers, int i) {
  return (uint16_t)(registers[i / 2] >> (16 * (i % 2)));
}

void emu_warp_mma_m16n8k16(int bf16, const uint32_t a[EMU_WARP][4], const uint32_t b[EMU_WARP][2],
                           const float c[EMU_WARP][4], float d[EMU_WARP][4]) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < EMU_WARP; lane++) {
    int group = lane >> 2, in_group = lane % 4;
    /* A, .f16/.bf16: a0..a7; row groupID for a0,a1,a4,a5 and groupID + 8 otherwise; column
     * threadID_in_group * 2 + (i & 1), plus 8 for i >= 4. */
    for (int i = 0; i < 8; i++) {
      int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
      int col = in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = emu_operand(bf16, emu_element(a[lane], i));
    }
    /* B, .f16/.bf16: b0..b3; row threadID_in_group * 2 + (i & 1), plus 8 for i >= 2; column groupID. */
    for (int i = 0; i < 4; i++) {
      int row = in_group * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      B[row][group] = emu_operand(bf16, emu_element(b[lane], i));
    }
    /* C/D, .f32: c0..c3; row groupID for i < 2, groupID + 8 otherwise; column
     * threadID_in_group * 2 + (i & 1). */
    for (int i = 0; i < 4; i++) C[i < 2 ? group : group + 8][in_group * 2 + (i & 1)] = c[lane][i];
  }
  float D[16][8];
  for (int row = 0; row < 16; row++)
    for (int col = 0; col < 8; col++) {
      float sum = C[row][col];
      for (int k = 0; k < 16; k++) sum += A[row][k] * B[k][col];  /* the product is exact in fp32 */
      D[row][col] = sum;
    }
  for (int lane = 0; lane < EMU_WARP; lane++)
    for (int i = 0; i < 4; i++) d[lane][i] = D[i < 2 ? lane >> 2 : (lane >> 2) + 8][(lane % 4) * 2 + (i & 1)];
}

void emu_warp_ldmatrix_x4(int transpose, const unsigned char *const rows[EMU_WARP], uint32_t out[EMU_WARP][4]) {
  /* Threads 8m .. 8m+7 give the addresses of rows 0..7 of matrix m. Each lane receives one 32-bit
   * fragment per matrix: "a group of four threads loads an entire row", thread 0 the first fragment,
   * so lane t holds elements 2(t % 4) and 2(t % 4) + 1 of row t / 4 (the lower one in the low half).
   * With .trans the matrix is read in column-major order: the same positions of the transposed
   * matrix, i.e. elements (row 2(t % 4), column t / 4) and (row 2(t % 4) + 1, column t / 4). */
  for (int m = 0; m < 4; m++) {
    uint16_t matrix[8][8];
    for (int r = 0; r < 8; r++) memcpy(matrix[r], rows[8 * m + r], 16);
    for (int t = 0; t < EMU_WARP; t++) {
      uint16_t lo, hi;
      if (transpose) {
        lo = matrix[2 * (t % 4)][t / 4];
        hi = matrix[2 * (t % 4) + 1][t / 4];
      } else {
        lo = matrix[t / 4][2 * (t % 4)];
        hi = matrix[t / 4][2 * (t % 4) + 1];
      }
      out[t][m] = (uint32_t)lo | (uint32_t)hi << 16;
    }
  }
}

void emu_warp_shfl_bfly(const uint32_t value[EMU_WARP], const uint32_t b[EMU_WARP], const uint32_t c[EMU_WARP],
                        uint32_t out[EMU_WARP]) {
  for (int lane = 0; lane < EMU_WARP; lane++) {
    uint32_t bval = b[lane] & 31, cval = c[lane] & 31, segmask = (c[lane] >> 8) & 31;
    uint32_t max_lane = ((uint32_t)lane & segmask) | (cval & ~segmask);
    uint32_t j = (uint32_t)lane ^ bval;
    if (!(j <= max_lane)) j = (uint32_t)lane;
    out[lane] = value[j];
  }
}

void emu_warp_vote_any(const uint32_t pred[EMU_WARP], uint32_t out[EMU_WARP]) {
  uint32_t any = 0;
  for (int lane = 0; lane < EMU_WARP; lane++) any |= pred[lane] != 0;
  for (int lane = 0; lane < EMU_WARP; lane++) out[lane] = any;
}
