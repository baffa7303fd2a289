"""numba's tiles are shaped for the vector unit numba compiles for: 8 pixels of one 512-bit FMA
each with AVX-512, 4 pixels of two 256-bit ones with AVX2 (see kernels/numba_jit.py). Compiled
in a fresh process for a named CPU, so an AVX2 machine checks the AVX-512 code and back."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from cases import CONV_CASES, assert_matches, conv_expected, conv_inputs

SHOW = """
import re
from numba import types
import kernels.numba_jit as nj
f32 = types.float32
signature = ((types.Array(f32, 6, "C"), types.Array(f32, 6, "C"), types.Array(f32, 4, "C")) + (types.intp,) * 8
             + (types.UniTuple(types.intp, 6), types.UniTuple(types.intp, 4)))
nj._tile_forward.compile(signature)
print(nj.TILE_PIXELS)
print(nj._tile_forward.inspect_asm(nj._tile_forward.signatures[0]))
"""

TARGETS = {  # LLVM's tuning for these Intel cores prefers 256-bit vectors when it vectorises
    "sapphirerapids": ("+avx,+avx2,+fma,+avx512f,+avx512vl,+avx512bw,+avx512dq", 8, "zmm"),
    "haswell": ("+avx,+avx2,+fma", 4, "ymm"),
}


@pytest.mark.subprocess
@pytest.mark.parametrize("cpu", TARGETS)
def test_the_tile_forward_is_one_full_width_fma_per_pixel_and_vector(cpu, tmp_path):
    features, pixels, register = TARGETS[cpu]
    env = {"NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": features, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout
    tile_pixels, asm = out.split("\n", 1)
    fmas = re.findall(r"vfmadd\w+ps\b[^\n]*", asm)
    assert int(tile_pixels) == pixels
    assert fmas and all(register in f for f in fmas), fmas[:4]
    # the channel loop's bodies: one FMA per pixel and per vector of the tile's 16 channels, for
    # a whole tile and for the half tile of a row's last pixels
    whole = pixels * 16 * 4 // {"zmm": 64, "ymm": 32}[register]
    assert len(fmas) >= whole + whole // 2 and len(fmas) % (whole // 2) == 0, len(fmas)


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c.N > 1], ids=lambda c: c.id)
def test_dw_summed_in_chunks_of_images_is_the_whole_batchs(case, monkeypatch):
    """dw's tiles are summed a chunk of images at a time and the chunks added; with one image a
    chunk (every batch of the grid fits one at the real size), float32 dw is still exact."""
    nj = pytest.importorskip("kernels.numba_jit")
    monkeypatch.setattr(nj, "VARIANT", "tiles")
    monkeypatch.setattr(nj, "DW_CHUNK_BYTES", 1)
    x, w, b, dy = conv_inputs(case, np.float32)
    _, ctx = nj.conv2d_forward(x, w, b, **case.params)
    _, dw, _ = nj.conv2d_backward(dy, ctx, need_dx=False)
    assert_matches(dw, conv_expected(case, np.float32)[2], "conv2d", np.float32, "dw")
