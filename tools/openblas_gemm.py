"""OpenBLAS's sgemm (through numpy) on the shapes of `cargo bench --bench gemm`, for the README's comparison.

  OPENBLAS_NUM_THREADS=2 python tools/openblas_gemm.py

Prints one line per shape in the bench's format, `gemm MxKxN ta=. tb=. tc=. threads=T gflops=G`, from the median of
repeated `np.matmul(a, b, out=c)` calls with the operands in the same layouts (a transposed operand is a transposed
view of a contiguous array, as in the bench). OpenBLAS picks its kernel for the CPU at run time; OPENBLAS_CORETYPE
(Haswell, SkylakeX, Zen, ...) overrides it. Run it in the same sitting as the bench, alternating.
"""
import os, re, sys, time

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
src = open(os.path.join(here, '..', 'benches', 'gemm.rs')).read()
shapes = re.findall(r'\((\d+), (\d+), (\d+), (true|false), (true|false), (true|false), "', src)


def median_gflops(m, k, n, ta, tb, tc):
    a = np.random.rand(k, m).astype(np.float32).T if ta else np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(n, k).astype(np.float32).T if tb else np.random.rand(k, n).astype(np.float32)
    c = np.empty((n, m), np.float32).T if tc else np.empty((m, n), np.float32)
    np.matmul(a, b, out=c)
    flops = 2.0 * m * k * n
    reps = max(5, int(4e10 / flops))
    times = []
    for _ in range(reps):
        t = time.perf_counter(); np.matmul(a, b, out=c); times.append(time.perf_counter() - t)
    times.sort()
    return flops / times[len(times) // 2] / 1e9


threads = os.environ.get('OPENBLAS_NUM_THREADS', 'all')
for m, k, n, ta, tb, tc in shapes:
    m, k, n = int(m), int(k), int(n)
    ta, tb, tc = ta == 'true', tb == 'true', tc == 'true'
    g = median_gflops(m, k, n, ta, tb, tc)
    print(f'openblas {m}x{k}x{n} ta={int(ta)} tb={int(tb)} tc={int(tc)} threads={threads} gflops={g:.1f}', flush=True)
